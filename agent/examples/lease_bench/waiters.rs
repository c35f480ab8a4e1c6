//! The patch-day scenario: N hosts queued at once in one group, each behaving like the host agent.
//!
//! Every simulated host opens a `Lease.Wait` stream to one of the voters (50
//! hosts share a connection, as a fleet behind a few NATs would not, but
//! 10,000 TLS connections from one benchmark process would measure the
//! benchmark), takes the slot it is handed (`Acquire`), holds it 5 ms and
//! releases. Printed: time to roll, raft entries per host, the gap between
//! one host's release and the next host's grant, the raft entries written
//! while everyone waits, and the voters' RSS with everyone queued.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use pb::lease_client::LeaseClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use baton_testkit::proc_stat::status_kib;

use super::{client, leader, percentile, Bench, Error};

/// Hosts per client connection.
const HOSTS_PER_CONNECTION: usize = 50;
/// How long each host holds the lease.
const HOLD: Duration = Duration::from_millis(5);
/// How long everyone waits (with the first host holding) while the raft
/// entries are counted.
const IDLE_WINDOW: Duration = Duration::from_secs(5);

const GROUP: &str = "patch-day";

/// What one host saw of its turn.
struct Turn {
    /// When its `Acquire` returned the grant (after the hand-over).
    granted: Instant,
    /// When it sent its `Release`: the end of its use of the lease.
    releasing: Instant,
    /// When its `Release` returned.
    released: Instant,
    token: u64,
}

/// The figures of one `--waiters N` run.
pub struct RollFigures {
    pub hosts: usize,
    pub entries_per_host: f64,
    pub roll_secs: f64,
    pub gap_p50_ms: f64,
    pub gap_p99_ms: f64,
    /// How long hosts held the lease, measured (p50): the turn's fixed part.
    pub hold_p50_ms: f64,
    pub idle_entries_per_sec: f64,
    pub peak_rss_mib: f64,
}

impl RollFigures {
    pub fn print_header() {
        println!(
            "| hosts queued in one group | raft entries per host | time to roll all | hosts/s | hold p50 | gap p50 / p99 | entries/s while waiting | voter RSS, all queued (max) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }

    pub fn print_row(&self) {
        println!(
            "| {} | {:.2} | {:.2} s | {:.1} | {:.2} ms | {:.1} ms / {:.1} ms | {:.1} | {:.1} MiB |",
            self.hosts,
            self.entries_per_host,
            self.roll_secs,
            self.hosts as f64 / self.roll_secs,
            self.hold_p50_ms,
            self.gap_p50_ms,
            self.gap_p99_ms,
            self.idle_entries_per_sec,
            self.peak_rss_mib
        );
    }
}

pub async fn last_applied(c: &mut LeaseClient<Channel>) -> Result<u64, Error> {
    Ok(c.status(pb::StatusRequest { stale: false })
        .await?
        .into_inner()
        .last_applied)
}

async fn queue_length(c: &mut LeaseClient<Channel>) -> Result<usize, Error> {
    let status = c
        .status(pb::StatusRequest { stale: false })
        .await?
        .into_inner();
    Ok(status
        .groups
        .iter()
        .find(|g| g.name == GROUP)
        .map_or(0, |g| g.queue.len()))
}

/// Holds the lease for `HOLD`. Tokio's timer counts whole milliseconds and
/// rounds up, so its 5 ms sleep held 5-6 ms (about a tenth of a host's
/// turn); a blocking thread's sleep ends within tens of microseconds of it.
/// Only one host holds at a time, so this takes one blocking thread.
async fn hold() -> Result<(), Error> {
    tokio::task::spawn_blocking(|| std::thread::sleep(HOLD)).await?;
    Ok(())
}

/// One host: wait, take the slot, hold, release.
async fn host(mut lease: LeaseClient<Channel>, holder: String) -> Result<Turn, Error> {
    let request = pb::WaitRequest {
        group: GROUP.into(),
        holder: holder.clone(),
        machine_id: format!("machine-{holder}"),
        released: None,
    };
    loop {
        let mut stream = lease.wait(request.clone()).await?.into_inner();
        let grant = loop {
            match stream.message().await? {
                Some(pb::WaitEvent {
                    kind: Some(pb::wait_event::Kind::Granted(grant)),
                }) => break Some(grant),
                Some(_) => {}
                None => break None,
            }
        };
        let Some(grant) = grant else { continue };
        // As the agent does: take the slot handed over (a no-op write-wise
        // when the grant is already claimed, but the agent asks anyway).
        let reply = lease
            .acquire(pb::AcquireRequest {
                group: GROUP.into(),
                holder: holder.clone(),
                machine_id: request.machine_id.clone(),
                released: None,
            })
            .await?
            .into_inner();
        let Some(pb::acquire_response::Outcome::Granted(held)) = reply.outcome else {
            continue;
        };
        if held.token != grant.token {
            return Err(format!(
                "{holder}: claimed token {} but was handed {}",
                held.token, grant.token
            )
            .into());
        }
        let granted = Instant::now();
        hold().await?;
        let releasing = Instant::now();
        lease
            .release(pb::ReleaseRequest {
                group: GROUP.into(),
                holder: holder.clone(),
                token: Some(held.token),
            })
            .await?;
        return Ok(Turn {
            granted,
            releasing,
            released: Instant::now(),
            token: held.token,
        });
    }
}

/// The voters' RSS now, in MiB (the largest).
fn max_rss_mib(bench: &Bench) -> f64 {
    bench
        .hosts
        .iter()
        .filter_map(|h| status_kib(h.pid()?, "VmRSS:"))
        .max()
        .unwrap_or(0) as f64
        / 1024.0
}

/// Queues `hosts` hosts at once behind one holder, then lets them roll.
pub async fn roll(bench: &Bench, hosts: usize) -> Result<RollFigures, Error> {
    let l = leader(bench).await?;
    let mut admin = client(bench, &bench.address(l)).await?;
    admin
        .acquire(pb::AcquireRequest {
            group: GROUP.into(),
            holder: "first".into(),
            machine_id: "machine-first".into(),
            released: None,
        })
        .await?;

    // The leader records each voter once (`RecordVoter`) soon after the
    // cluster forms: let that pass so only the roll's entries are counted.
    for _ in 0..100 {
        let status = admin
            .status(pb::StatusRequest { stale: false })
            .await?
            .into_inner();
        if status.voters.iter().all(|v| v.stored) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Everyone queues behind "first", spread over the three voters.
    let first_index = last_applied(&mut admin).await?;
    let mut connections = Vec::new();
    for c in 0..hosts.div_ceil(HOSTS_PER_CONNECTION) {
        connections.push(client(bench, &bench.address(c % 3)).await?);
    }
    let turns = Arc::new(Mutex::new(Vec::with_capacity(hosts)));
    let mut tasks = Vec::with_capacity(hosts);
    for n in 0..hosts {
        let lease = connections[n / HOSTS_PER_CONNECTION].clone();
        let turns = turns.clone();
        tasks.push(tokio::spawn(async move {
            let turn = host(lease, format!("host-{n:05}")).await?;
            turns.lock().await.push(turn);
            Ok::<(), Error>(())
        }));
    }
    let queued_by = Instant::now() + Duration::from_secs(60 + hosts as u64 / 50);
    while queue_length(&mut admin).await? < hosts {
        // A host that gave up says why.
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            tasks.swap_remove(i).await??;
            return Err("a host finished before the roll began".into());
        }
        if Instant::now() > queued_by {
            return Err(format!("not all {hosts} hosts queued in time").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everyone waits: count the raft entries this costs.
    let before_idle = last_applied(&mut admin).await?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let after_idle = last_applied(&mut admin).await?;
    let peak_rss_mib = max_rss_mib(bench);
    // The status reads themselves cost no entry after the first of a term.
    let idle_entries_per_sec = (after_idle - before_idle) as f64 / IDLE_WINDOW.as_secs_f64();

    // The roll: "first" releases, then every hand-over is one host's turn.
    let start = Instant::now();
    admin
        .release(pb::ReleaseRequest {
            group: GROUP.into(),
            holder: "first".into(),
            token: None,
        })
        .await?;
    for task in tasks {
        task.await??;
    }
    let roll_secs = start.elapsed().as_secs_f64();
    let end_index = last_applied(&mut admin).await?;

    let mut turns = std::mem::take(&mut *turns.lock().await);
    turns.sort_by_key(|t| t.token);
    // The next host can only be granted once the release reached the
    // leader, so its grant must come after the release was sent. (Its
    // grant may well come before the previous host *heard* back from its
    // release, on a busy machine.)
    if turns.windows(2).any(|w| w[1].granted < w[0].releasing) {
        return Err("two hosts held the lease at once".into());
    }
    let mut gaps: Vec<Duration> = turns
        .windows(2)
        .map(|w| w[1].granted.saturating_duration_since(w[0].released))
        .collect();
    if gaps.is_empty() {
        gaps.push(Duration::ZERO);
    }
    let mut holds: Vec<Duration> = turns.iter().map(|t| t.releasing - t.granted).collect();
    Ok(RollFigures {
        hosts,
        // Every entry from the first host's enqueue to the last host's
        // release (and "first"'s release) counts.
        entries_per_host: (end_index - first_index) as f64 / hosts as f64,
        roll_secs,
        gap_p50_ms: percentile(&mut gaps, 0.50),
        gap_p99_ms: percentile(&mut gaps, 0.99),
        hold_p50_ms: percentile(&mut holds, 0.50),
        idle_entries_per_sec,
        peak_rss_mib,
    })
}
