//! Supervision: a voter whose disk fails stops (non-zero, for systemd to restart) without losing a grant; a broken host agent does not take its voter down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{stderr, stdout, TestCluster};

/// A small tmpfs mounted over a directory, unmounted on drop.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. "8m") over `at`, keeping what was there.
    fn mount_over(at: &Path, size: &str) -> Option<SmallDisk> {
        let saved = at.with_extension("saved");
        std::fs::rename(at, &saved).ok()?;
        std::fs::create_dir(at).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(at);
            let _ = std::fs::rename(&saved, at);
            return None;
        }
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", saved.display()))
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(copied, "copy the state into the tmpfs");
        Some(SmallDisk {
            at: at.to_path_buf(),
        })
    }

    /// Fills the disk until at most `leave` bytes are free.
    fn fill(&self, leave: u64) {
        let free = free_bytes(&self.at);
        let filler = self.at.join("filler");
        let size = free.saturating_sub(leave);
        let file = std::fs::File::create(&filler).expect("create filler");
        // tmpfs allocates on write, not on set_len: write it out.
        use std::io::Write;
        let mut writer = std::io::BufWriter::new(file);
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0;
        while written < size {
            let n = chunk.len().min((size - written) as usize);
            if writer.write_all(&chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        let _ = writer.flush();
    }

    fn free_up(&self) {
        let _ = std::fs::remove_file(self.at.join("filler"));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Acquire and release `holder` in `group` through the CLI; the token.
fn roll_once(cluster: &TestCluster, group: &str, holder: &str) -> Option<u64> {
    let out = cluster.cli(&["lease", "acquire", group, "--holder", holder]);
    if !out.status.success() {
        return None;
    }
    let token = stdout(&out).trim().parse().ok()?;
    let out = cluster.cli(&["lease", "release", group, "--holder", holder]);
    out.status.success().then_some(token)
}

/// A follower's disk fills up: it stops with a non-zero status (so
/// systemd restarts it) instead of acknowledging what it cannot store; the
/// other two go on, no acknowledged grant is lost, and with space again it
/// restarts and catches up.
#[test]
fn a_voter_whose_disk_is_full_stops_and_loses_nothing() {
    if !is_root() {
        eprintln!("skipped: mounting a small file system needs root");
        return;
    }
    let mut cluster = TestCluster::start(3, "");
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    let leader = status["leader"].as_u64().unwrap() as usize - 1;
    let victim = (leader + 1) % 3;
    cluster.kill(victim);
    let Some(disk) = SmallDisk::mount_over(&cluster.state_dir(victim), "16m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    cluster.start_voter(victim);
    // It runs and stores entries; then its disk fills up under it.
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.extend(roll_once(&cluster, "disk", "h1"));
    }
    assert!(cluster.exited(victim).is_none(), "{}", cluster.log(victim));
    disk.fill(0);

    // Writes go on (the other two are a majority) until the victim fails.
    roll_until_exit(&mut cluster, victim, &mut tokens, "full disk", |c| {
        format!("free: {} bytes", free_bytes(&c.state_dir(victim)))
    });
    assert!(
        cluster.log(victim).contains("raft stopped")
            || cluster.log(victim).contains("No space left"),
        "the log says why: {}",
        cluster.log(victim)
    );
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    survivors_keep_every_grant_and_the_victim_catches_up(&mut cluster, victim, &tokens, || {
        disk.free_up()
    });
    drop(cluster);
    drop(disk);
}

/// Rolls h1 in group "disk" (the other two voters are a majority) until
/// the victim exits by itself, which it must do non-zero within a minute.
fn roll_until_exit(
    cluster: &mut TestCluster,
    victim: usize,
    tokens: &mut Vec<u64>,
    fault: &str,
    about_disk: impl Fn(&TestCluster) -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        tokens.extend(roll_once(cluster, "disk", "h1"));
        if let Some(exit) = cluster.exited(victim) {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "{fault}: the voter kept running after {} grants; {}\n{}",
            tokens.len(),
            about_disk(cluster),
            cluster.log(victim)
        );
    };
    assert!(!exit.success(), "{fault}: exit status {exit:?}");
    eprintln!(
        "{fault}: the victim exited ({exit:?}); {} grants acknowledged in all",
        tokens.len()
    );
}

/// After a voter failed on its disk: the survivors serve every acknowledged
/// grant (h1 may still hold the lease: the last release can fail while the
/// victim goes down; a holder's Acquire answers with its grant); then,
/// once `heal` has run, the victim starts from its disk and catches up.
fn survivors_keep_every_grant_and_the_victim_catches_up(
    cluster: &mut TestCluster,
    victim: usize,
    tokens: &[u64],
    heal: impl FnOnce(),
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let token: u64 = loop {
        let out = cluster.cli(&["lease", "acquire", "disk", "--holder", "h1"]);
        if out.status.success() {
            break stdout(&out).trim().parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(token >= *tokens.last().unwrap_or(&0), "{token} {tokens:?}");

    heal();
    cluster.start_voter(victim);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cluster.wait_for_leader(Duration::from_secs(5));
        let last = status["last_applied"].as_u64().unwrap();
        if status["voters"][victim]["matched"].as_u64() >= Some(last) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "voter did not catch up: {status}\n{}",
            cluster.log(victim)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let own = cluster.cli_at(&cluster.address(victim), &["status", "--json", "--stale"]);
    let own: serde_json::Value = serde_json::from_slice(&own.stdout).unwrap();
    assert_eq!(own["groups"]["disk"]["holders"][0]["token"], token, "{own}");
}

/// A follower whose fsync starts failing with EIO (the kernel's answer for
/// a disk that lost a write): it stops with a non-zero status instead of
/// acknowledging what may not be on disk; no acknowledged grant is lost.
/// The fault is injected into the real process by strace (`inject=`,
/// ptrace): no device-mapper or failing disk can be had on this machine.
#[test]
fn a_voter_whose_fsync_fails_stops_and_loses_nothing() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed");
        return;
    }
    let mut cluster = TestCluster::start(3, "");
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    let leader = status["leader"].as_u64().unwrap() as usize - 1;
    let victim = (leader + 1) % 3;
    cluster.kill(victim);
    // Every fsync/fdatasync from the 60th on fails: start-up and some
    // grants go through first.
    let wrapper = cluster.layout.root().join("failing-fsync.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec strace -f -qq --seccomp-bpf -o /dev/null -e trace=fsync,fdatasync \
             -e inject=fsync,fdatasync:error=EIO:when=60+ {} \"$@\"\n",
            crate::support::baton_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    cluster.start_voter_through(victim, &wrapper);

    let mut tokens = Vec::new();
    roll_until_exit(&mut cluster, victim, &mut tokens, "fsync EIO", |_| {
        String::new()
    });
    assert!(
        cluster.log(victim).contains("raft stopped")
            || cluster.log(victim).contains("Input/output error"),
        "the log says why: {}",
        cluster.log(victim)
    );
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    survivors_keep_every_grant_and_the_victim_catches_up(&mut cluster, victim, &tokens, || ());
}

/// A voter that also runs the host agent, whose agent state is corrupt:
/// the agent stops and says which file and what to do; the voter serves on.
#[test]
fn a_broken_host_agent_does_not_take_its_voter_down() {
    let mut cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let victim = 0;
    cluster.kill(victim);
    let config = cluster.layout.root().join("cp-1").join("baton.toml");
    let text = std::fs::read_to_string(&config).expect("voter config");
    let sentinel = cluster.layout.root().join("cp-1-reboot-required");
    let text = text.replace(
        "[updates]\nsource = \"none\"\n",
        &format!(
            "[updates]\nsource = \"sentinel\"\nsentinel_file = \"{}\"\n\n[reboot]\nmethod = \"command\"\ncommand = [\"true\"]\n",
            sentinel.display()
        ),
    );
    assert!(
        text.contains("sentinel"),
        "updates section replaced: {text}"
    );
    std::fs::write(&config, text).unwrap();
    let agent_state = cluster.state_dir(victim).join("agent.json");
    std::fs::write(&agent_state, "{ not json").unwrap();
    cluster.start_voter(victim);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = cluster.log(victim);
        if log.contains("host agent stopped") {
            assert!(log.contains("agent.json"), "names the file: {log}");
            assert!(log.contains("move it away"), "says the fix: {log}");
            break;
        }
        assert!(Instant::now() < deadline, "no word about the agent: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        cluster.exited(victim).is_none(),
        "the voter exited with its agent:\n{}",
        cluster.log(victim)
    );
    // It still votes and serves: a write needs it once another voter is gone.
    let other = 1;
    cluster.kill(other);
    let out = cluster.cli(&["lease", "acquire", "agentless", "--holder", "h1"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        cluster.all_logs()
    );
}
