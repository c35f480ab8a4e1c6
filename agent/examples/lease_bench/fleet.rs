//! The fleet view at fleet scale: N hosts reporting to the voters at the agents' default interval.
//!
//! Every simulated host sends one `Fleet.Report` per report interval (30 s,
//! the default `[updates] report_interval`), the first at an offset spread
//! evenly over the interval, to one of the three voters (50 hosts share a
//! connection, as in `waiters`; the benchmark's admin certificate may
//! report for any host). After one interval every host has reported once
//! and the leader's table is full. Printed: report latency, each voter's
//! CPU over the interval (followers pass their reports on to the leader in
//! batches), the raft entries written (none are expected: the view is
//! memory only), the `Hosts` answer (time, size, hosts listed) and the
//! voters' RSS with the table full.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::v1 as pb;
use pb::fleet_client::FleetClient;
use prost::Message;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use super::waiters::last_applied;
use baton_testkit::proc_stat::{cpu_seconds, status_kib};

use super::{client, leader, percentile, Bench, Error};

/// Hosts per client connection.
const HOSTS_PER_CONNECTION: usize = 50;
/// The agents' default report interval.
const INTERVAL: Duration = Duration::from_secs(30);
/// The `Hosts` answer of a full table is large (the CLI allows 64 MiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The figures of one `--reporters N` run.
pub struct FleetFigures {
    hosts: usize,
    refused: usize,
    report_p50_ms: f64,
    report_p99_ms: f64,
    /// Per voter, the leader first: CPU seconds per second over the interval.
    cpu: Vec<f64>,
    entries: u64,
    listed: usize,
    answer_ms: f64,
    answer_bytes: usize,
    /// Per voter, the leader first, in MiB.
    rss_mib: Vec<f64>,
}

impl FleetFigures {
    pub fn print_header() {
        println!(
            "| hosts reporting | reports/s | report p50 / p99 | refused | raft entries | voter CPU (leader; followers) | `Hosts` answer: time, size, hosts | voter RSS (leader; followers) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }

    pub fn print_row(&self) {
        let percent = |v: &[f64]| {
            v.iter()
                .map(|c| format!("{:.1}%", c * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mib = |v: &[f64]| {
            v.iter()
                .map(|m| format!("{m:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| {} | {:.0} | {:.2} ms / {:.2} ms | {} | {} | {}; {} | {:.0} ms, {:.1} MB, {} | {}; {} MiB |",
            self.hosts,
            self.hosts as f64 / INTERVAL.as_secs_f64(),
            self.report_p50_ms,
            self.report_p99_ms,
            self.refused,
            self.entries,
            percent(&self.cpu[..1]),
            percent(&self.cpu[1..]),
            self.answer_ms,
            self.answer_bytes as f64 / 1e6,
            self.listed,
            mib(&self.rss_mib[..1]),
            mib(&self.rss_mib[1..]),
        );
    }
}

/// What an idle agent reports, at realistic field sizes; one host in ten
/// has an update waiting.
fn report(n: usize) -> pb::HostReport {
    let pending = n.is_multiple_of(10).then(|| pb::PendingReboot {
        source: "flatcar".into(),
        reason: "update_engine: UPDATE_STATUS_UPDATED_NEED_REBOOT".into(),
        version: Some("4152.2.1".into()),
    });
    pb::HostReport {
        name: format!("host-{n:05}"),
        group: format!("workers-{}", n % 20),
        phase: if pending.is_some() {
            "reboot-needed"
        } else {
            "idle"
        }
        .into(),
        pending,
        last_boot_s: Some(1_764_000_000 + n as u64),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        report_interval_ms: INTERVAL.as_millis() as u64,
        phase_since_ms: Some(1_764_000_000_000 + n as u64),
    }
}

/// `hosts` hosts report once each over one interval; then the view is read.
pub async fn measure(bench: &Bench, hosts: usize) -> Result<FleetFigures, Error> {
    let l = leader(bench).await?;
    // The leader first, then the followers.
    let order: Vec<usize> = (0..3).map(|k| (l + k) % 3).collect();
    let pids: Vec<u32> = order
        .iter()
        .map(|&i| bench.hosts[i].pid().ok_or("a voter is not running"))
        .collect::<Result<_, _>>()?;
    let mut admin = client(bench, &bench.address(l)).await?;
    let first_index = last_applied(&mut admin).await?;
    let cpu_before: Vec<f64> = pids
        .iter()
        .map(|&p| cpu_seconds(p).unwrap_or(0.0))
        .collect();

    let mut connections = Vec::new();
    for c in 0..hosts.div_ceil(HOSTS_PER_CONNECTION) {
        let channel = bench.dialer.connect(&bench.address(c % 3)).await?;
        connections.push(FleetClient::new(channel));
    }
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(hosts)));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(hosts);
    for n in 0..hosts {
        let mut fleet: FleetClient<Channel> = connections[n / HOSTS_PER_CONNECTION].clone();
        let (latencies, refused) = (latencies.clone(), refused.clone());
        let at = start + INTERVAL.mul_f64(n as f64 / hosts as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let sent = Instant::now();
            match fleet.report(report(n)).await {
                Ok(_) => latencies.lock().await.push(sent.elapsed()),
                Err(_) => {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu_before)
        .map(|(&p, before)| (cpu_seconds(p).unwrap_or(0.0) - before) / elapsed)
        .collect();
    // Followers pass reports on every 200 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let mut view = FleetClient::new(bench.dialer.connect(&bench.address(l)).await?)
        .max_decoding_message_size(MAX_ANSWER_BYTES);
    let asked = Instant::now();
    let answer = view.hosts(pb::HostsRequest {}).await?.into_inner();
    let answer_ms = asked.elapsed().as_secs_f64() * 1000.0;
    let entries = last_applied(&mut admin).await? - first_index;
    let rss_mib = pids
        .iter()
        .map(|&p| status_kib(p, "VmRSS:").unwrap_or(0) as f64 / 1024.0)
        .collect();
    let mut latencies = std::mem::take(&mut *latencies.lock().await);
    if latencies.is_empty() {
        return Err(format!("all {hosts} reports were refused").into());
    }
    Ok(FleetFigures {
        hosts,
        refused: refused.load(std::sync::atomic::Ordering::Relaxed),
        report_p50_ms: percentile(&mut latencies, 0.50),
        report_p99_ms: percentile(&mut latencies, 0.99),
        cpu,
        entries,
        listed: answer.hosts.len(),
        answer_ms,
        answer_bytes: answer.encoded_len(),
        rss_mib,
    })
}
