//! The host agent's state file `agent.json` (`host::phase_file::PhaseFile`),
//! read as the agent reads it at start, then resumed (`rules::phases::resume`).
//!
//! No panic on any file. A phase that loads saves and loads back the same
//! (the atomic save path); resuming with the boot id it names keeps it,
//! with another one leaves `rebooting`; resuming twice changes nothing more.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use baton::fuzzing::{resume, Phase, PhaseFile};
use libfuzzer_sys::fuzz_target;

/// A directory of this process's own, in memory where there is one (the
/// save path fsyncs).
fn state_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("baton-fuzz-agent-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("state dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = state_dir();
    std::fs::write(dir.join("agent.json"), data).expect("write agent.json");
    let file = PhaseFile::new(dir);
    let phase = match file.load() {
        Ok(phase) => phase,
        Err(e) => {
            assert!(e.to_string().contains("agent.json"));
            return;
        }
    };
    let _ = (phase.name(), phase.describe(), phase.lease());

    let boot_id = match &phase {
        Phase::Rebooting { boot_id, .. } => boot_id.clone(),
        _ => String::from("same-boot"),
    };
    assert_eq!(
        resume(phase.clone(), &boot_id),
        phase,
        "resumed in the same boot"
    );
    let other_boot = format!("{boot_id}-next");
    let resumed = resume(phase.clone(), &other_boot);
    match (&phase, &resumed) {
        (
            Phase::Rebooting {
                update,
                lease,
                drain,
                ..
            },
            Phase::PostReboot {
                update: u,
                lease: l,
                drain: d,
            },
        ) => {
            assert_eq!((update, lease, drain), (u, l, d));
        }
        (Phase::Rebooting { .. }, other) => panic!("rebooted, yet resumed as {other:?}"),
        (before, after) => assert_eq!(before, after),
    }
    assert_eq!(
        resume(resumed.clone(), &other_boot),
        resumed,
        "resume is not idempotent"
    );

    file.save(&phase).expect("save");
    assert_eq!(file.load().expect("load what was saved"), phase);
});
