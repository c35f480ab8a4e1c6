//! A private dbus-daemon with fake update_engine and logind services on it.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::object_server::SignalEmitter;

pub const IDLE: &str = "UPDATE_STATUS_IDLE";
pub const DOWNLOADING: &str = "UPDATE_STATUS_DOWNLOADING";
pub const NEED_REBOOT: &str = "UPDATE_STATUS_UPDATED_NEED_REBOOT";

/// A dbus-daemon of our own, listening on a unix socket in a temp dir. Killed on drop
/// (also when a test panics), so no daemon outlives its test.
pub struct DbusDaemon {
    dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
}

impl DbusDaemon {
    /// Starts the daemon and waits until it accepts connections.
    pub fn start() -> DbusDaemon {
        let dir = tempfile::tempdir().expect("temp dir for dbus-daemon");
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        // Like the stock session.conf, with a fixed socket path so that a restarted
        // daemon is found at the same address (as the system bus is).
        let xml = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            socket.display()
        );
        std::fs::write(&config, xml).expect("write dbus-daemon config");
        let mut daemon = DbusDaemon {
            dir,
            config,
            socket,
            child: None,
        };
        daemon.spawn();
        daemon
    }

    /// The address clients use: the socket path only, without the daemon's guid, so that
    /// it stays valid across a restart (like `unix:path=/run/dbus/system_bus_socket`).
    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// Kills the daemon (every connection on it breaks) and starts a new one on the same
    /// socket.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut child = match Command::new("dbus-daemon")
            .arg(format!("--config-file={}", self.config.display()))
            .arg("--nofork")
            .arg("--print-address")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "dbus-daemon not found: these tests need a real D-Bus daemon; install it with `apt-get install dbus`"
            ),
            Err(e) => panic!("cannot start dbus-daemon: {e}"),
        };
        // --print-address writes the address once the socket listens: our ready signal.
        let stdout = child.stdout.take().expect("dbus-daemon stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        if !matches!(read, Ok(n) if n > 0) {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("dbus-daemon did not start ({read:?}): {stderr}");
        }
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The temp dir of this daemon, handy for test files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// update_engine's status as the fake reports it.
#[derive(Debug, Clone)]
pub struct EngineState {
    pub last_checked_time: i64,
    pub progress: f64,
    pub current_operation: String,
    pub new_version: String,
    pub new_size: i64,
}

struct FakeUpdateEngine {
    state: Arc<Mutex<EngineState>>,
    attempts: Arc<AtomicUsize>,
}

#[zbus::interface(name = "com.coreos.update1.Manager")]
impl FakeUpdateEngine {
    #[zbus(out_args(
        "last_checked_time",
        "progress",
        "current_operation",
        "new_version",
        "new_size"
    ))]
    fn get_status(&self) -> (i64, f64, String, String, i64) {
        let s = self.state.lock().expect("fake state").clone();
        (
            s.last_checked_time,
            s.progress,
            s.current_operation,
            s.new_version,
            s.new_size,
        )
    }

    fn attempt_update(&self) {
        self.attempts.fetch_add(1, Ordering::SeqCst);
    }

    fn reset_status(&self) {
        let mut s = self.state.lock().expect("fake state");
        s.current_operation = IDLE.to_string();
        s.new_version = "0.0.0".to_string();
        s.progress = 0.0;
    }

    #[zbus(signal)]
    async fn status_update(
        emitter: &SignalEmitter<'_>,
        last_checked_time: i64,
        progress: f64,
        current_operation: &str,
        new_version: &str,
        new_size: i64,
    ) -> zbus::Result<()>;
}

/// A fake update_engine on the test bus: `com.coreos.update1` at `/com/coreos/update1`.
pub struct UpdateEngineService {
    conn: zbus::Connection,
    state: Arc<Mutex<EngineState>>,
    attempts: Arc<AtomicUsize>,
}

impl UpdateEngineService {
    /// Registers the service with the given state.
    pub async fn start(address: &str, operation: &str, new_version: &str) -> UpdateEngineService {
        let state = Arc::new(Mutex::new(EngineState {
            last_checked_time: 1_700_000_000,
            progress: if operation == NEED_REBOOT { 1.0 } else { 0.0 },
            current_operation: operation.to_string(),
            new_version: new_version.to_string(),
            new_size: 400_000_000,
        }));
        let attempts = Arc::new(AtomicUsize::new(0));
        let fake = FakeUpdateEngine {
            state: state.clone(),
            attempts: attempts.clone(),
        };
        let conn = zbus::connection::Builder::address(address)
            .expect("bus address")
            .name("com.coreos.update1")
            .expect("well-known name")
            .serve_at("/com/coreos/update1", fake)
            .expect("serve update_engine")
            .build()
            .await
            .expect("fake update_engine connects to the test bus");
        UpdateEngineService {
            conn,
            state,
            attempts,
        }
    }

    /// Changes the state without telling anyone (as if the signal were lost).
    pub fn set_quietly(&self, operation: &str, new_version: &str, progress: f64) {
        let mut s = self.state.lock().expect("fake state");
        s.current_operation = operation.to_string();
        s.new_version = new_version.to_string();
        s.progress = progress;
    }

    /// Changes the state and emits StatusUpdate, as update_engine does.
    pub async fn set(&self, operation: &str, new_version: &str, progress: f64) {
        self.set_quietly(operation, new_version, progress);
        self.emit().await;
    }

    /// Emits StatusUpdate with the current state.
    pub async fn emit(&self) {
        let s = self.state.lock().expect("fake state").clone();
        let emitter = SignalEmitter::new(&self.conn, "/com/coreos/update1").expect("emitter");
        FakeUpdateEngine::status_update(
            &emitter,
            s.last_checked_time,
            s.progress,
            &s.current_operation,
            &s.new_version,
            s.new_size,
        )
        .await
        .expect("emit StatusUpdate");
    }

    /// How often AttemptUpdate was called.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Leaves the bus (update_engine stopping).
    pub async fn stop(self) {
        let _ = self.conn.close().await;
    }
}

struct FakeLogind {
    calls: Arc<Mutex<Vec<bool>>>,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl FakeLogind {
    fn reboot(&self, interactive: bool) {
        self.calls.lock().expect("fake calls").push(interactive);
    }
}

/// A fake logind on the test bus that records Reboot calls instead of rebooting.
pub struct LogindService {
    /// Kept open: the service leaves the bus when its connection closes.
    _conn: zbus::Connection,
    calls: Arc<Mutex<Vec<bool>>>,
}

impl LogindService {
    /// Registers `org.freedesktop.login1` at `/org/freedesktop/login1`.
    pub async fn start(address: &str) -> LogindService {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let conn = zbus::connection::Builder::address(address)
            .expect("bus address")
            .name("org.freedesktop.login1")
            .expect("well-known name")
            .serve_at(
                "/org/freedesktop/login1",
                FakeLogind {
                    calls: calls.clone(),
                },
            )
            .expect("serve logind")
            .build()
            .await
            .expect("fake logind connects to the test bus");
        LogindService { _conn: conn, calls }
    }

    /// The `interactive` argument of every Reboot call so far, in order.
    pub fn reboot_calls(&self) -> Vec<bool> {
        self.calls.lock().expect("fake calls").clone()
    }
}

/// Polls `cond` until it holds, failing the test after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
