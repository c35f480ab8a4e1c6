//! The limits on what comes from the network: message sizes, streams, concurrency; one place.
//!
//! Names and texts are limited in `names`, groups, queues and max holders in
//! `lease` (`MAX_GROUPS`, `MAX_QUEUE`, `MAX_HOLDERS_CAP`). Over a limit is an
//! error the caller sees (`InvalidArgument`, `ResourceExhausted`), never a
//! stall and never an allocation of whatever size a peer asks for.

/// Largest Lease or Admin request a voter decodes. Every field is capped far
/// below this (names 253 characters, reasons 256).
pub const MAX_API_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest raft RPC a voter decodes or sends: a batch of log entries (each
/// bounded by the request caps) or one snapshot chunk.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Snapshot chunk size the leader sends: far under the message limit even
/// encoded as JSON (a byte is at most four characters there).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

/// Largest snapshot a voter accepts: the state of 1,000 groups with 20,000
/// waiters each stays well under it.
pub const MAX_SNAPSHOT_BYTES: u64 = 512 * 1024 * 1024;

/// Watch streams one caller may hold open on one voter (a host needs one).
pub const MAX_WATCHES_PER_CALLER: usize = 8;

/// Requests one connection may have in flight at once.
pub const MAX_CONCURRENT_REQUESTS_PER_CONNECTION: usize = 64;

/// Calls a voter forwards to the leader at once (they share one connection,
/// so this stays under the leader's per-connection limit; more wait).
pub const MAX_FORWARDED_IN_FLIGHT: usize = 48;

/// Largest response a voter decodes from a fleet of 10,000 hosts (status
/// with every waiter listed): generous, but bounded.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Output kept of a command baton runs (hook, blocker, reboot command,
/// sentinel command), per stream: its tail, for the message.
pub const MAX_COMMAND_OUTPUT_BYTES: usize = 64 * 1024;

/// Sessions named in one `Lease.KeepAlive` call (a voter with more sends several).
pub const MAX_KEEPALIVE_SESSIONS: usize = 1_000;

/// Lapsed sessions dropped by one `DropWaiters` entry (more take several).
pub const MAX_DROPS_PER_ENTRY: usize = 4_096;

/// Wait streams one caller may hold open on one voter for one holder (a
/// host needs one per group; a reconnect may briefly overlap the old one).
pub const MAX_WAITS_PER_HOLDER: usize = 4;

// HTTP endpoints (`[metrics]`, `[fleetlock]`, served by `transport::http`).

/// Largest HTTP request head (request line and headers) read: hyper's
/// smallest read buffer. A longer head is answered 431 or dropped.
pub const MAX_HTTP_HEAD_BYTES: usize = 8 * 1024;

/// Time for an HTTP client to send its request head.
pub const HTTP_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Time for one HTTP exchange, request to last byte of the answer. A
/// FleetLock call may wait for an election (the cluster's request timeout).
pub const HTTP_EXCHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Scrapes served at once; a connection beyond this is closed unanswered.
pub const MAX_METRICS_CONNECTIONS: usize = 16;

/// FleetLock requests served at once (each is one short exchange; Zincati
/// asks every 5 minutes); a connection beyond this is closed unanswered.
pub const MAX_FLEETLOCK_CONNECTIONS: usize = 64;

/// Largest FleetLock request body: `{"client_params":{"id":..,"group":..}}`
/// with the longest holder and group names fits many times over.
pub const MAX_FLEETLOCK_BODY_BYTES: usize = 4 * 1024;

/// FleetLock clients (id and group) whose place one voter keeps between
/// their polls; a new client beyond this is refused (503) until one leaves.
pub const MAX_FLEETLOCK_CLIENTS: usize = 20_000;

// ---- The fleet view (`baton hosts`, see `rules::fleet`) ----

/// Hosts the leader keeps in the fleet view; over it, the host heard from
/// least recently is forgotten (it reappears at its next report). The scale
/// target is 10,000 hosts.
pub const MAX_FLEET_HOSTS: usize = 20_000;

/// Reports a voter passes on to the leader in one `Fleet.Forward` call (a
/// voter with more sends several).
pub const MAX_REPORTS_PER_BATCH: usize = 1_000;

/// Longest pending-update reason in a report, in characters (an apt package
/// list is cut to this by the agent before it reports). With it, a table of
/// `MAX_FLEET_HOSTS` reports at every limit still fits one `Hosts` answer
/// (`MAX_RESPONSE_BYTES`); at 1,024 it took 122 MB.
pub const MAX_REPORT_REASON_LEN: usize = 256;

/// Longest short text in a report: the update source, its version, the
/// agent's version.
pub const MAX_REPORT_WORD_LEN: usize = 64;

/// The shortest and the longest report interval a host may announce, in
/// milliseconds (`[updates] report_interval`).
pub const MIN_REPORT_INTERVAL_MS: u64 = 1_000;
pub const MAX_REPORT_INTERVAL_MS: u64 = 3_600_000;

/// Largest answer read from Prometheus's `/api/v1/alerts` (the alerts
/// blocker): thousands of alerts with their labels fit; more is an error
/// (the blocker then blocks), never an allocation of whatever size is sent.
pub const MAX_ALERTS_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Largest answer read from a notification webhook (it is not used; read
/// only so that the connection ends cleanly).
pub const MAX_WEBHOOK_RESPONSE_BYTES: usize = 16 * 1024;

/// Longest notification text sent to a webhook, after the template is
/// filled in (Slack cuts messages at 40,000 characters).
pub const MAX_NOTIFICATION_BYTES: usize = 4 * 1024;

/// Longest URL accepted in the config (Prometheus, webhooks).
pub const MAX_URL_BYTES: usize = 2048;
