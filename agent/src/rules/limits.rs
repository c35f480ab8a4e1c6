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
