//! Logging setup: the journal with structured fields, plain stderr or JSON lines; RUST_LOG.
//!
//! In the journal every event keeps its fields as journal fields, with no
//! prefix: `tracing::info!(BATON_PHASE = "draining", BATON_GROUP = %group,
//! "...")` gives `BATON_PHASE=draining` and `BATON_GROUP=...` beside
//! `MESSAGE=` and `SYSLOG_IDENTIFIER=baton`, so `journalctl -u baton
//! BATON_PHASE=draining` finds it. Field names are upper-cased by the journal
//! layer (`index` becomes `INDEX`), so lower-case fields such as `error` or
//! `index` are kept too. `MESSAGE` is the message text alone, without the
//! fields: write messages that read on their own (the fields are for
//! filtering and machines).
//!
//! Names not to use as field names, because the journal gives them a meaning
//! of its own: `priority`, `syslog_identifier`, `code_file`, `code_line`,
//! `target`, and anything starting with `_` (journald drops those).

use std::fmt;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::EnvFilter;

/// journald's native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// `SYSLOG_IDENTIFIER=` of every journal entry (`journalctl -t baton`).
pub const SYSLOG_IDENTIFIER: &str = "baton";
/// Environment variable with the filter directives (e.g. `debug`,
/// `info,baton=debug,openraft=info`).
pub const FILTER_ENV: &str = "RUST_LOG";
/// Filter of the daemon when RUST_LOG is unset.
pub const DAEMON_DEFAULT_FILTER: &str = "info,openraft=warn";
/// Filter of the other commands when RUST_LOG is unset: only warnings, so
/// their own output stays clean.
pub const CLI_DEFAULT_FILTER: &str = "warn,openraft=error";

/// Where log events go (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// The daemon under systemd: the journal (native protocol, structured
    /// fields); otherwise plain text on stderr.
    #[default]
    Auto,
    /// The systemd journal; plain stderr if the journal cannot be reached.
    Journal,
    /// Human-readable lines on stderr.
    Plain,
    /// One JSON object per line on stderr, fields at the top level (for
    /// supervisors other than systemd and log shippers).
    Json,
}

impl LogFormat {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Journal => "journal",
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        }
    }

    /// Picks the concrete format for `Auto`; the other formats are returned
    /// as they are. Only the daemon goes to the journal on its own: the
    /// other commands write to stderr, which their caller reads (a hook
    /// script that runs `baton lease ...` inherits the unit's environment,
    /// but wants the errors on its stderr).
    pub fn resolve(self, daemon: bool, host: &LogHost) -> LogFormat {
        match self {
            LogFormat::Auto
                if daemon
                    && (host.stderr_is_journal || (host.under_systemd && host.journal_socket)) =>
            {
                LogFormat::Journal
            }
            LogFormat::Auto => LogFormat::Plain,
            other => other,
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(LogFormat::Auto),
            "journal" | "journald" => Ok(LogFormat::Journal),
            "plain" | "text" => Ok(LogFormat::Plain),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown log format {text:?} (expected auto, journal, plain or json)"
            )),
        }
    }
}

/// What `Auto` looks at, read once from the process environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogHost {
    /// `JOURNAL_STREAM` names the device and inode of our stderr: systemd
    /// connected stderr to the journal (systemd.exec(5) says to compare both,
    /// since the variable is inherited by children with other stderrs).
    pub stderr_is_journal: bool,
    /// `INVOCATION_ID` is set: started by systemd as (part of) a unit.
    pub under_systemd: bool,
    /// journald's socket exists.
    pub journal_socket: bool,
}

impl LogHost {
    /// Reads the environment of this process.
    pub fn detect() -> LogHost {
        let stderr_is_journal = std::env::var("JOURNAL_STREAM")
            .ok()
            .and_then(|value| parse_journal_stream(&value))
            .is_some_and(|(dev, ino)| stderr_identity() == Some((dev, ino)));
        LogHost {
            stderr_is_journal,
            under_systemd: std::env::var_os("INVOCATION_ID").is_some_and(|v| !v.is_empty()),
            journal_socket: Path::new(JOURNAL_SOCKET).exists(),
        }
    }
}

/// Parses `JOURNAL_STREAM` (`"<st_dev>:<st_ino>"`, both decimal).
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Device and inode of fd 2, if it is open.
fn stderr_identity() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `init` was called twice, or something else installed a subscriber.
    #[error("cannot install the log subscriber: {0}")]
    AlreadyInstalled(#[source] TryInitError),
}

/// The format `init` installed, for [`report_error`].
static ACTIVE: OnceLock<LogFormat> = OnceLock::new();

/// Installs the global subscriber and returns the format in use (never
/// `Auto`). The daemon logs at info, the other commands at warn, unless
/// RUST_LOG says otherwise. Problems that do not stop logging (an invalid
/// RUST_LOG, a journal that cannot be reached) are logged as warnings once
/// the subscriber is in place, and logging goes on with the default filter
/// or on plain stderr.
pub fn init(daemon: bool, format: LogFormat) -> Result<LogFormat, LoggingError> {
    init_with(daemon, format, &LogHost::detect())
}

/// [`init`] with the host facts given, for callers that detected them already.
pub fn init_with(
    daemon: bool,
    format: LogFormat,
    host: &LogHost,
) -> Result<LogFormat, LoggingError> {
    let (filter, filter_problem) = filter(daemon, std::env::var(FILTER_ENV).ok().as_deref());
    let mut journal_problem = None;
    let used = match format.resolve(daemon, host) {
        LogFormat::Journal => match journal_layer() {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init()
                    .map_err(LoggingError::AlreadyInstalled)?;
                LogFormat::Journal
            }
            Err(e) => {
                journal_problem = Some(e);
                install_plain(daemon, filter)?;
                LogFormat::Plain
            }
        },
        LogFormat::Json => {
            let layer = tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson)
                .with_writer(std::io::stderr);
            tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .try_init()
                .map_err(LoggingError::AlreadyInstalled)?;
            LogFormat::Json
        }
        LogFormat::Plain | LogFormat::Auto => {
            install_plain(daemon, filter)?;
            LogFormat::Plain
        }
    };
    let _ = ACTIVE.set(used);
    if let Some(problem) = filter_problem {
        tracing::warn!("{problem}");
    }
    if let Some(e) = journal_problem {
        tracing::warn!("cannot log to the journal at {JOURNAL_SOCKET} ({e}); logging to stderr");
    }
    Ok(used)
}

/// Reports the error that ends the process (`main`'s last word). On stderr
/// as `baton: MESSAGE` for people and plain logs; in the journal as an
/// event at priority err (3), where a line on stderr would be filed at info
/// and without SYSLOG_IDENTIFIER's structure; as a JSON `ERROR` line in the
/// JSON format.
pub fn report_error(message: &str) {
    match ACTIVE.get() {
        Some(LogFormat::Journal | LogFormat::Json) => tracing::error!("{message}"),
        _ => {
            let _ = writeln!(std::io::stderr(), "baton: {message}");
        }
    }
}

/// JSON lines with every field at the top level: the event's own and those
/// of the spans it is logged in (the BATON_* fields come from spans, see
/// `log_fields`), like the journal shows them.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut object = Map::new();
        object.insert(
            "timestamp".into(),
            jiff::Timestamp::now().to_string().into(),
        );
        object.insert("level".into(), meta.level().as_str().into());
        object.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                // With `JsonFields`, a span's recorded fields are a JSON object.
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(map)) = serde_json::from_str(&fields.fields) {
                        object.extend(map);
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut object));
        let line = serde_json::to_string(&Value::Object(object)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Collects an event's fields into a JSON object.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// The journal layer: fields without the `F_` prefix, SYSLOG_IDENTIFIER=baton,
/// and the usual syslog priorities (tracing-journald's default puts info at
/// notice (5) and debug at info (6); here info is 6 and debug and trace are 7,
/// so `journalctl -p notice` shows warnings and errors only).
fn journal_layer() -> std::io::Result<tracing_journald::Layer> {
    let priorities = PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    };
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.into())
        .with_priority_mappings(priorities))
}

/// Plain text on stderr; colours only on a terminal. The daemon's lines carry
/// a timestamp (another supervisor may not add one); a command's do not.
fn install_plain(daemon: bool, filter: EnvFilter) -> Result<(), LoggingError> {
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if daemon {
        registry.with(layer).try_init()
    } else {
        registry.with(layer.without_time()).try_init()
    }
    .map_err(LoggingError::AlreadyInstalled)
}

/// The filter from RUST_LOG, or the default (with the reason when RUST_LOG
/// was set but could not be used).
fn filter(daemon: bool, env: Option<&str>) -> (EnvFilter, Option<String>) {
    let default = if daemon {
        DAEMON_DEFAULT_FILTER
    } else {
        CLI_DEFAULT_FILTER
    };
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        None => (EnvFilter::new(default), None),
        Some(directives) => match EnvFilter::builder().parse(directives) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(default),
                Some(format!(
                    "{FILTER_ENV}={directives:?} is not a valid filter ({e}); using {default:?}"
                )),
            ),
        },
    }
}

/// An error and its causes as one line; a cause already quoted by the
/// error before it is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNDER_JOURNAL: LogHost = LogHost {
        stderr_is_journal: true,
        under_systemd: true,
        journal_socket: true,
    };

    #[test]
    fn auto_picks_the_journal_only_for_the_daemon_under_systemd() {
        assert_eq!(
            LogFormat::Auto.resolve(true, &UNDER_JOURNAL),
            LogFormat::Journal
        );
        assert_eq!(
            LogFormat::Auto.resolve(false, &UNDER_JOURNAL),
            LogFormat::Plain
        );
        // StandardError= pointed elsewhere, but still a unit with a journal.
        let unit = LogHost {
            stderr_is_journal: false,
            ..UNDER_JOURNAL
        };
        assert_eq!(LogFormat::Auto.resolve(true, &unit), LogFormat::Journal);
        // A terminal on a systemd host: not a unit.
        let shell = LogHost {
            stderr_is_journal: false,
            under_systemd: false,
            journal_socket: true,
        };
        assert_eq!(LogFormat::Auto.resolve(true, &shell), LogFormat::Plain);
        // A container without journald.
        assert_eq!(
            LogFormat::Auto.resolve(true, &LogHost::default()),
            LogFormat::Plain
        );
        let no_socket = LogHost {
            journal_socket: false,
            stderr_is_journal: false,
            under_systemd: true,
        };
        assert_eq!(LogFormat::Auto.resolve(true, &no_socket), LogFormat::Plain);
    }

    #[test]
    fn explicit_formats_are_kept() {
        for format in [LogFormat::Journal, LogFormat::Plain, LogFormat::Json] {
            assert_eq!(format.resolve(true, &LogHost::default()), format);
            assert_eq!(format.resolve(false, &UNDER_JOURNAL), format);
        }
    }

    #[test]
    fn formats_parse_and_print() {
        for format in [
            LogFormat::Auto,
            LogFormat::Journal,
            LogFormat::Plain,
            LogFormat::Json,
        ] {
            assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
        }
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        let err = "syslog".parse::<LogFormat>().unwrap_err();
        assert!(
            err.contains("\"syslog\"") && err.contains("auto, journal, plain or json"),
            "{err}"
        );
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_journal_stream(" 8:1\n"), Some((8, 1)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("a:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }

    #[test]
    fn stderr_identity_matches_a_journal_stream_naming_it() {
        // What systemd would put in JOURNAL_STREAM if our stderr were its stream.
        let (dev, ino) = stderr_identity().expect("the test runner has a stderr");
        assert_eq!(
            parse_journal_stream(&format!("{dev}:{ino}")),
            Some((dev, ino))
        );
    }

    #[test]
    fn filter_falls_back_to_the_default_and_says_why() {
        let (filter, problem) = filter(true, None);
        assert_eq!(
            filter.to_string(),
            EnvFilter::new(DAEMON_DEFAULT_FILTER).to_string()
        );
        assert!(problem.is_none());
        let (filter, problem) = filter_for(false, "  ");
        assert_eq!(
            filter.to_string(),
            EnvFilter::new(CLI_DEFAULT_FILTER).to_string()
        );
        assert!(problem.is_none());
        let (filter, problem) = filter_for(true, "baton=debug");
        assert_eq!(filter.to_string(), "baton=debug");
        assert!(problem.is_none());
        let (filter, problem) = filter_for(true, "baton=loud");
        assert_eq!(
            filter.to_string(),
            EnvFilter::new(DAEMON_DEFAULT_FILTER).to_string()
        );
        let problem = problem.expect("an invalid filter is reported");
        assert!(
            problem.starts_with("RUST_LOG=\"baton=loud\" is not a valid filter"),
            "{problem}"
        );
    }

    fn filter_for(daemon: bool, env: &str) -> (EnvFilter, Option<String>) {
        filter(daemon, Some(env))
    }

    #[test]
    fn json_lines_carry_span_fields_at_the_top_level() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            crate::log_fields::lease_span(Some("draining"), "workers", Some("h1"), Some(7))
                .in_scope(|| tracing::warn!(index = 3u64, "drain {}", "failed"));
            crate::log_fields::lease_span(Some("idle"), "workers", None, None)
                .in_scope(|| tracing::info!("no lease"));
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["BATON_PHASE"], "draining", "{first}");
        assert_eq!(first["BATON_GROUP"], "workers", "{first}");
        assert_eq!(first["BATON_HOLDER"], "h1", "{first}");
        assert_eq!(first["BATON_TOKEN"], 7, "{first}");
        assert_eq!(first["message"], "drain failed", "{first}");
        assert_eq!(first["index"], 3, "{first}");
        assert_eq!(first["level"], "WARN", "{first}");
        // Fields given as None are left out.
        assert!(lines[1].get("BATON_TOKEN").is_none(), "{}", lines[1]);
        assert!(lines[1].get("BATON_HOLDER").is_none(), "{}", lines[1]);
    }
}
