//! Running a command: the one runner for hooks, blockers, the reboot command and updaters.
//!
//! stdin is closed, the tail of stdout and stderr is kept for messages,
//! systemd's per-service variables (`NOTIFY_SOCKET`, `WATCHDOG_*`) are
//! removed so a command cannot talk to systemd on baton's behalf, and a
//! command with a timeout is killed with all it started when it runs out.

use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::service_manager::SERVICE_ENV;
use crate::rules::limits::MAX_COMMAND_OUTPUT_BYTES;

/// Why a command did not run to a successful end.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Nothing to run (the config loader refuses this; a guard).
    #[error("empty command")]
    Empty,
    /// The program could not be started (often: not found).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line, as [`display_command`] writes it.
        command: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// It did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// It ran and failed: non-zero exit, or killed by a signal.
    #[error("`{command}` failed ({status}){}", if output.is_empty() { String::new() } else { format!(": {output}") })]
    Failed {
        /// The command line.
        command: String,
        /// Exit status in words, e.g. `exit status 3`.
        status: String,
        /// The last lines of its output.
        output: String,
    },
}

/// Lines of output kept in a [`ProcessError::Failed`] message.
const TAIL_LINES: usize = 5;

/// A command that ran to its end (successfully or not).
#[derive(Debug)]
pub struct Finished {
    /// The command line, for messages.
    pub command: String,
    /// Exit status and captured output.
    pub output: Output,
}

impl Finished {
    /// Ok when it exited 0, else [`ProcessError::Failed`] with the last lines of its output.
    pub fn success(self) -> Result<Finished, ProcessError> {
        if self.output.status.success() {
            return Ok(self);
        }
        Err(self.failed())
    }

    /// This run as a failure (for callers that judge the exit status themselves).
    pub fn failed(&self) -> ProcessError {
        ProcessError::Failed {
            command: self.command.clone(),
            status: describe_status(self.output.status),
            output: output_tail(&self.output, TAIL_LINES),
        }
    }
}

/// Runs `argv` to its end with `env` added. `timeout`: kill it, and every
/// process it started (it runs in a process group of its own), after this
/// long; `None`: wait as long as it takes, and let it finish even if the
/// caller stops waiting (an unattended-upgrade run killed half-way through
/// dpkg would break the host). Of its output, the last
/// [`MAX_COMMAND_OUTPUT_BYTES`] of each stream are kept.
pub async fn run(
    argv: &[String],
    env: &[(&str, String)],
    timeout: Option<Duration>,
) -> Result<Finished, ProcessError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ProcessError::Empty);
    };
    let command = display_command(argv);
    let mut child = tokio::process::Command::new(program);
    child
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(timeout.is_some());
    if timeout.is_some() {
        child.process_group(0);
    }
    for key in SERVICE_ENV {
        child.env_remove(key);
    }
    let mut child = child.spawn().map_err(|source| ProcessError::Spawn {
        command: command.clone(),
        source,
    })?;
    let group = child.id();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let finished = async {
        let (status, stdout, stderr) =
            tokio::join!(child.wait(), read_tail(stdout), read_tail(stderr));
        status.map(|status| Output {
            status,
            stdout,
            stderr,
        })
    };
    let output = match timeout {
        Some(limit) => match tokio::time::timeout(limit, finished).await {
            Ok(result) => result,
            Err(_) => {
                if let Some(pgid) = group.and_then(|pid| i32::try_from(pid).ok()) {
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                }
                return Err(ProcessError::Timeout {
                    command,
                    timeout: limit,
                });
            }
        },
        None => finished.await,
    };
    match output {
        Ok(output) => Ok(Finished { command, output }),
        Err(source) => Err(ProcessError::Spawn { command, source }),
    }
}

/// Reads a stream to its end, keeping its last [`MAX_COMMAND_OUTPUT_BYTES`]
/// (reading on, so the command never blocks on a full pipe).
async fn read_tail(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        kept.extend_from_slice(&buf[..n]);
        // Trim in batches rather than after every read.
        if kept.len() > 2 * MAX_COMMAND_OUTPUT_BYTES {
            kept.drain(..kept.len() - MAX_COMMAND_OUTPUT_BYTES);
        }
    }
    let cut = kept.len().saturating_sub(MAX_COMMAND_OUTPUT_BYTES);
    kept.split_off(cut)
}

/// A command line as an operator would type it, for logs and errors:
/// arguments with spaces or quotes are single-quoted.
pub fn display_command(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            {
                format!("'{}'", arg.replace('\'', r"'\''"))
            } else {
                arg.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a command ended, in words: `exit status 3`, `killed by signal 9`.
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The last non-empty lines of a command's stdout and stderr, joined by
/// ` | `: enough to see why it failed without flooding the journal.
pub fn output_tail(output: &Output, max_lines: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        lines.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    let skip = lines.len().saturating_sub(max_lines);
    lines[skip..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn output_status_and_environment() {
        let finished = run(
            &sh("echo \"$A\"; echo err >&2; exit 3"),
            &[("A", "x y".into())],
            None,
        )
        .await
        .expect("ran");
        assert_eq!(finished.output.status.code(), Some(3));
        let error = finished.success().expect_err("exit 3").to_string();
        assert_eq!(
            error,
            "`sh -c 'echo \"$A\"; echo err >&2; exit 3'` failed (exit status 3): x y | err"
        );
    }

    #[tokio::test]
    async fn systemd_service_variables_are_not_passed_on() {
        // The daemon inherits these from systemd; the runner removes them
        // whether inherited or given (given here, so that this test does not
        // change the environment of the other tests running beside it).
        let argv = sh("echo \"${NOTIFY_SOCKET:-unset} ${WATCHDOG_USEC:-unset}\"");
        let env = [
            ("NOTIFY_SOCKET", "/run/systemd/notify".to_string()),
            ("WATCHDOG_USEC", "30000000".to_string()),
        ];
        let finished = run(&argv, &env, Some(Duration::from_secs(5)))
            .await
            .expect("ran");
        let seen = String::from_utf8_lossy(&finished.output.stdout);
        assert_eq!(seen.trim(), "unset unset");
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_its_timeout() {
        let started = std::time::Instant::now();
        let error = run(&sh("sleep 30"), &[], Some(Duration::from_millis(200)))
            .await
            .expect_err("timeout");
        assert!(matches!(error, ProcessError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_timeout_kills_what_the_command_started_too() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The child leaves a grandchild that would write the marker later.
        let script = format!("(sleep 1; touch '{}') & sleep 30", marker.display());
        let error = run(&sh(&script), &[], Some(Duration::from_millis(200)))
            .await
            .expect_err("timeout");
        assert!(matches!(error, ProcessError::Timeout { .. }), "{error}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the grandchild was killed with the group");
    }

    #[tokio::test]
    async fn output_is_bounded_to_its_tail() {
        // 1 MiB of output, then a last line: only the tail is kept.
        let script = "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo last line";
        let finished = run(&sh(script), &[], Some(Duration::from_secs(10)))
            .await
            .expect("ran");
        assert_eq!(finished.output.stdout.len(), MAX_COMMAND_OUTPUT_BYTES);
        let text = String::from_utf8_lossy(&finished.output.stdout);
        assert!(
            text.ends_with("last line\n"),
            "{}",
            &text[text.len() - 20..]
        );
    }

    #[tokio::test]
    async fn missing_and_empty_commands_are_errors() {
        let error = run(&["/nonexistent/cmd".to_string()], &[], None)
            .await
            .expect_err("not found");
        assert!(matches!(error, ProcessError::Spawn { .. }), "{error}");
        assert!(error.to_string().contains("/nonexistent/cmd"), "{error}");
        assert!(matches!(
            run(&[], &[], None).await,
            Err(ProcessError::Empty)
        ));
    }

    #[test]
    fn command_lines_are_shown_as_typed() {
        let argv: Vec<String> = ["sh", "-c", "echo 'hi'", ""].map(String::from).to_vec();
        assert_eq!(display_command(&argv), r"sh -c 'echo '\''hi'\''' ''");
    }
}
