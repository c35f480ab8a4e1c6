//! The systemd notification protocol (sd_notify): READY, STATUS, STOPPING, WATCHDOG.
//!
//! Every call is a no-op when systemd gave no NOTIFY_SOCKET.
//!
//! Failures to notify are logged at debug and otherwise ignored: a daemon
//! that cannot reach its service manager keeps doing its job (with
//! `Type=notify` systemd then times the start out or the watchdog fires,
//! which says more than an error from here could).
//!
//! How the daemon uses it: `ready()` once the gRPC listener serves (and, on
//! a voter, storage is open); `status()` on every phase change, in plain
//! words; `watchdog_ping()` once per main-loop iteration, and the loop
//! wakes at least every `watchdog_interval()` (a stuck loop stops the pings
//! and systemd restarts the unit); `stopping()` on SIGTERM.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::locks::LockOrRecover;

/// Environment variables systemd sets for the service's main process only.
/// Remove them from the environment of commands the daemon runs (hooks,
/// blockers), so that those commands do not talk to systemd on baton's
/// behalf (with `NotifyAccess=main` systemd ignores them anyway).
pub const SERVICE_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Longest STATUS= text sent; systemd shows one line in `systemctl status`.
pub const MAX_STATUS_BYTES: usize = 1024;

/// A handle on systemd's notification socket, read from the environment once.
/// Cheap to clone (clones share the warnings); every method takes `&self`
/// and never fails.
#[derive(Debug, Clone, Default)]
pub struct ServiceManager {
    /// NOTIFY_SOCKET was set: systemd waits for READY=1 and reads STATUS=.
    notify: bool,
    /// WATCHDOG_USEC, when set for this process (WATCHDOG_PID unset or ours).
    watchdog: Option<Duration>,
    /// Standing warnings appended to every STATUS= (plaintext, a
    /// certificate about to expire), by topic.
    warnings: Arc<Mutex<BTreeMap<&'static str, String>>>,
    /// Set while a part of the process that does not ping itself (the
    /// voter's raft core and gRPC server) does not answer: pings from the
    /// others stop too, so the watchdog sees the whole process.
    others_stuck: Arc<AtomicBool>,
}

impl ServiceManager {
    /// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID.
    pub fn from_env() -> ServiceManager {
        let notify = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        ServiceManager {
            notify,
            watchdog: watchdog.filter(|_| notify),
            warnings: Arc::default(),
            others_stuck: Arc::default(),
        }
    }

    /// Sets (or, with None, clears) the standing warning of `topic`.
    pub fn warn(&self, topic: &'static str, warning: Option<String>) {
        let mut warnings = self.warnings.lock_or_recover();
        match warning {
            Some(text) => warnings.insert(topic, text),
            None => warnings.remove(topic),
        };
    }

    /// `text` followed by the standing warnings.
    fn with_warnings(&self, text: &str) -> String {
        let warnings = self.warnings.lock_or_recover();
        let mut line = text.to_string();
        for warning in warnings.values() {
            line.push_str(" | WARNING: ");
            line.push_str(warning);
        }
        status_text(&line)
    }

    /// READY=1: the service is up (systemd reports the unit active and
    /// starts units ordered after it).
    pub fn ready(&self) {
        self.send("READY=1", &[NotifyState::Ready]);
    }

    /// READY=1 and STATUS= in one message.
    pub fn ready_with_status(&self, text: &str) {
        let text = self.with_warnings(text);
        self.send("READY=1", &[NotifyState::Ready, NotifyState::Status(&text)]);
    }

    /// STATUS=: one line shown by `systemctl status baton`. Line breaks
    /// become spaces (they would end the message's field); longer than
    /// [`MAX_STATUS_BYTES`] is cut with "...".
    pub fn status(&self, text: &str) {
        let text = self.with_warnings(text);
        self.send("STATUS", &[NotifyState::Status(&text)]);
    }

    /// EXTEND_TIMEOUT_USEC=: still starting, give it `by` more than
    /// `TimeoutStartSec=` (sent while a voter waits for a majority).
    pub fn extend_start(&self, by: Duration) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(
            "EXTEND_TIMEOUT_USEC",
            &[NotifyState::ExtendTimeoutUsec(usec)],
        );
    }

    /// STOPPING=1: shutting down (systemd shows "deactivating").
    pub fn stopping(&self) {
        self.send("STOPPING=1", &[NotifyState::Stopping]);
    }

    /// How often to call [`Self::watchdog_ping`]: half of `WatchdogSec=`, as
    /// sd_watchdog_enabled(3) advises; `None` when the unit has no watchdog
    /// (then pings are no-ops and the loop need not wake for them).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Whether the parts that do not ping themselves answer; while they do
    /// not, [`Self::watchdog_ping`] sends nothing.
    pub fn set_others_alive(&self, alive: bool) {
        self.others_stuck.store(!alive, Ordering::Relaxed);
    }

    /// WATCHDOG=1: the main loop made progress. A no-op without a watchdog,
    /// and while [`Self::set_others_alive`] says another part is stuck.
    pub fn watchdog_ping(&self) {
        if self.watchdog.is_some() && !self.others_stuck.load(Ordering::Relaxed) {
            self.send("WATCHDOG=1", &[NotifyState::Watchdog]);
        }
    }

    fn send(&self, what: &str, states: &[NotifyState<'_>]) {
        if !self.notify {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!("cannot send {what} to systemd: {e}");
        }
    }
}

/// STATUS= text: one line, at most [`MAX_STATUS_BYTES`] bytes.
fn status_text(text: &str) -> String {
    let mut line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX_STATUS_BYTES {
        let mut end = MAX_STATUS_BYTES - 3;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str("...");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::process::Command;

    /// Set in the child process that `protocol_*` tests start.
    const CHILD_MARKER: &str = "BATON_SERVICE_MANAGER_TEST_CHILD";

    #[test]
    fn status_text_is_one_bounded_line() {
        assert_eq!(
            status_text("idle: no update pending"),
            "idle: no update pending"
        );
        assert_eq!(status_text(" waiting\nfor lease\r\n"), "waiting for lease");
        let long = "é".repeat(MAX_STATUS_BYTES);
        let cut = status_text(&long);
        assert!(
            cut.len() <= MAX_STATUS_BYTES && cut.ends_with("..."),
            "{}",
            cut.len()
        );
    }

    #[test]
    fn disabled_sends_nothing_and_has_no_watchdog() {
        let manager = ServiceManager::default();
        assert!(!manager.notify);
        assert_eq!(manager.watchdog_interval(), None);
        manager.ready();
        manager.status("x");
        manager.watchdog_ping();
        manager.stopping();
    }

    /// Runs `child_test` of this module in a child process (the test binary
    /// itself) with `env`, and returns the datagrams it sent to NOTIFY_SOCKET
    /// and whether it passed. The environment is never changed in this
    /// process: other tests run in parallel threads.
    fn run_child(child_test: &str, env: &[(&str, String)]) -> (Vec<String>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                &format!("{module}::{child_test}"),
                "--exact",
                "--test-threads=1",
            ])
            .env(CHILD_MARKER, "1")
            .env("NOTIFY_SOCKET", &path);
        for var in SERVICE_ENV.iter().skip(1) {
            command.env_remove(var);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let passed =
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed");
        if !passed {
            eprintln!(
                "child {child_test}: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        (messages, passed)
    }

    #[test]
    fn protocol_messages_reach_the_notify_socket() {
        let (messages, passed) = run_child(
            "child_sends_the_lifecycle",
            &[("WATCHDOG_USEC", "30000000".into())],
        );
        assert!(passed);
        assert_eq!(
            messages,
            [
                "READY=1\nSTATUS=idle: no update pending\n",
                "STATUS=waiting for lease: position 3 of 5\n",
                "WATCHDOG=1\n",
                "STOPPING=1\n",
            ]
        );
    }

    #[test]
    fn watchdog_of_another_process_is_ignored() {
        let (messages, passed) = run_child(
            "child_has_no_watchdog",
            &[
                ("WATCHDOG_USEC", "30000000".into()),
                ("WATCHDOG_PID", "1".into()),
            ],
        );
        assert!(passed);
        assert_eq!(messages, ["READY=1\n"]);
    }

    #[test]
    fn child_sends_the_lifecycle() {
        if std::env::var_os(CHILD_MARKER).is_none() {
            return;
        }
        let manager = ServiceManager::from_env();
        assert!(manager.notify);
        assert_eq!(manager.watchdog_interval(), Some(Duration::from_secs(15)));
        manager.ready_with_status("idle: no update pending");
        manager.status("waiting for lease:\nposition 3 of 5");
        manager.watchdog_ping();
        // A stuck voter silences the pings of the rest (one WATCHDOG=1 above).
        manager.set_others_alive(false);
        manager.watchdog_ping();
        manager.set_others_alive(true);
        manager.stopping();
    }

    #[test]
    fn child_has_no_watchdog() {
        if std::env::var_os(CHILD_MARKER).is_none() {
            return;
        }
        let manager = ServiceManager::from_env();
        assert_eq!(manager.watchdog_interval(), None);
        manager.watchdog_ping();
        manager.ready();
    }
}
