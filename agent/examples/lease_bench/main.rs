//! Lease benchmark: starts a 3-voter loopback cluster of real `baton agent` processes (release build, fsync on) and prints
//! p50/p99 of acquire, release, hand-off and leader failover, plus each voter's idle RSS.
//!
//! Run: `cargo build --release --bin baton && cargo run --release --example lease_bench [-- ITERATIONS]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton::{Dialer, FleetLayout, HostConfig, LocalHost, Role, TlsMode, TlsState};
use baton_proto::v1 as pb;
use pb::lease_client::LeaseClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

type Error = Box<dyn std::error::Error>;

fn baton_binary() -> Result<PathBuf, Error> {
    // target/release/examples/lease_bench -> target/release/baton
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .ok_or("no target dir")?;
    let bin = dir.join("baton");
    if !bin.exists() {
        return Err(format!(
            "{} missing: run `cargo build --release --bin baton` first",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// The voters' log filter: only problems.
const RUST_LOG: &str = "warn";

/// A field of /proc/PID/status in KiB (VmRSS, RssAnon, RssFile).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A client of the voter at `address`, on its own connection (as a host).
async fn client(bench: &Bench, address: &str) -> Result<LeaseClient<Channel>, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match bench.dialer.connect(address).await {
            Ok(channel) => return Ok(LeaseClient::new(channel)),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn leader(bench: &Bench) -> Result<usize, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, _) in bench
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_running())
        {
            if let Ok(mut c) = client(bench, &bench.address(i)).await {
                if let Ok(s) = c.status(pb::StatusRequest { stale: false }).await {
                    if let Some(l) = s.into_inner().leader {
                        return Ok(l as usize - 1);
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return Err("no leader".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn acquire_req(group: &str, holder: &str) -> pb::AcquireRequest {
    pb::AcquireRequest {
        group: group.into(),
        holder: holder.into(),
        machine_id: String::new(),
    }
}

fn release_req(group: &str, holder: &str) -> pb::ReleaseRequest {
    pb::ReleaseRequest {
        group: group.into(),
        holder: holder.into(),
        token: None,
    }
}

fn granted(reply: &pb::AcquireResponse) -> bool {
    matches!(
        reply.outcome,
        Some(pb::acquire_response::Outcome::Granted(_))
    )
}

/// p50 and p99 of `samples`, in milliseconds.
fn report(name: &str, mut samples: Vec<Duration>, target: &str) {
    let n = samples.len();
    let (p50, p99, max) = (
        percentile(&mut samples, 0.50),
        percentile(&mut samples, 0.99),
        percentile(&mut samples, 1.0),
    );
    println!(
        "{name:<26} n={n:<5} p50={p50:>8.3} ms  p99={p99:>8.3} ms  max={max:>8.3} ms   target: {target}"
    );
}

/// The three voters of the benchmark (baton's own local fleet launcher),
/// and how the benchmark's clients dial them.
struct Bench {
    bin: PathBuf,
    layout: FleetLayout,
    hosts: Vec<LocalHost>,
    dialer: Dialer,
}

impl Bench {
    fn address(&self, i: usize) -> String {
        self.layout.voters()[i].address.clone()
    }

    fn start(&mut self, i: usize) -> Result<(), Error> {
        Ok(self.hosts[i].start(&self.bin, RUST_LOG)?)
    }
}

/// Acquire latencies of one mode, for the comparison at the end.
struct Figures {
    acquire_p50: f64,
    acquire_p99: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let bin = baton_binary()?;
    // The same benchmark twice in one run: plaintext, then mutual TLS.
    let plain = cluster_run(&bin, false, iterations).await?;
    let tls = cluster_run(&bin, true, iterations).await?;
    println!(
        "TLS / plaintext, acquire on the leader: p50 {:.3} / {:.3} ms = {:.2}x, p99 {:.3} / {:.3} ms = {:.2}x   target: < 1.10x",
        tls.acquire_p50,
        plain.acquire_p50,
        tls.acquire_p50 / plain.acquire_p50,
        tls.acquire_p99,
        plain.acquire_p99,
        tls.acquire_p99 / plain.acquire_p99
    );
    Ok(())
}

/// Starts a 3-voter cluster (with or without TLS), runs the benchmark on
/// it and stops it.
async fn cluster_run(bin: &Path, tls: bool, iterations: usize) -> Result<Figures, Error> {
    let dir = std::env::temp_dir().join(format!("baton-bench-{}-{tls}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<String> = (1..=3).map(|i| format!("b{i}")).collect();
    let layout = FleetLayout::new(&dir, &names, tls)?;
    let cluster = std::env::var("BATON_BENCH_CLUSTER").unwrap_or_default();
    let config = HostConfig {
        cluster: &cluster,
        sections: "[updates]\nsource = \"none\"\n",
        ..HostConfig::default()
    };
    let hosts = names
        .iter()
        .map(|name| layout.write_host(name, &config))
        .collect::<Result<Vec<_>, _>>()?;
    // The benchmark's clients present an admin certificate: they act for
    // many holders, as only an admin may.
    let mode = match layout.client_identity("bench", Role::Admin)? {
        Some(identity) => TlsMode::Mutual(TlsState::load(&identity.files())?),
        None => TlsMode::Insecure,
    };
    let dialer = Dialer::new(Duration::from_secs(2), Duration::from_secs(10), mode);
    let mut bench = Bench {
        bin: bin.to_path_buf(),
        layout,
        hosts,
        dialer,
    };
    for i in 0..3 {
        bench.start(i)?;
    }
    println!(
        "\n== {}",
        if tls {
            "mutual TLS"
        } else {
            "plaintext ([tls] insecure = true)"
        }
    );
    let result = run(&mut bench, iterations).await;
    drop(bench);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(bench: &mut Bench, iterations: usize) -> Result<Figures, Error> {
    let l = leader(bench).await?;
    println!("baton lease bench: 3 voters on 127.0.0.1, release build, fsync on; {iterations} iterations; leader = voter {}", l + 1);
    let mut on_leader = client(bench, &bench.address(l)).await?;
    let mut on_follower = client(bench, &bench.address((l + 1) % 3)).await?;

    // Warm up connections and the group.
    for _ in 0..20 {
        on_leader.acquire(acquire_req("bench", "warm")).await?;
        on_leader.release(release_req("bench", "warm")).await?;
    }

    let mut acquire = Vec::new();
    let mut release = Vec::new();
    for n in 0..iterations {
        let holder = format!("h{}", n % 50);
        let t = Instant::now();
        let reply = on_leader
            .acquire(acquire_req("bench", &holder))
            .await?
            .into_inner();
        acquire.push(t.elapsed());
        if !granted(&reply) {
            return Err("acquire not granted in an empty group".into());
        }
        let t = Instant::now();
        on_leader.release(release_req("bench", &holder)).await?;
        release.push(t.elapsed());
    }
    let mut via_follower = Vec::new();
    for n in 0..iterations / 5 {
        let holder = format!("f{}", n % 50);
        let t = Instant::now();
        on_follower.acquire(acquire_req("bench-f", &holder)).await?;
        via_follower.push(t.elapsed());
        on_follower.release(release_req("bench-f", &holder)).await?;
    }

    // Hand-off: A holds, B is queued and watching; from the moment A's
    // release is committed (its reply) to B's grant.
    let mut handoff = Vec::new();
    let mut waiter = client(bench, &bench.address((l + 2) % 3)).await?;
    let mut watcher = client(bench, &bench.address((l + 2) % 3)).await?;
    for _ in 0..(iterations / 5).max(20) {
        on_leader.acquire(acquire_req("handoff", "A")).await?;
        let reply = waiter
            .acquire(acquire_req("handoff", "B"))
            .await?
            .into_inner();
        if granted(&reply) {
            return Err("B granted while A holds".into());
        }
        let mut stream = watcher
            .watch(pb::WatchRequest {
                group: "handoff".into(),
            })
            .await?
            .into_inner();
        let _snapshot = stream.next().await;
        on_leader.release(release_req("handoff", "A")).await?;
        let committed = Instant::now();
        while let Some(event) = stream.next().await {
            if matches!(event?.kind, Some(pb::watch_event::Kind::Released(_))) {
                break;
            }
        }
        let reply = waiter
            .acquire(acquire_req("handoff", "B"))
            .await?
            .into_inner();
        handoff.push(committed.elapsed());
        if !granted(&reply) {
            return Err("B not granted after A released".into());
        }
        waiter.release(release_req("handoff", "B")).await?;
    }

    // Idle RSS after the load settles.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss: Vec<(u64, u64, u64)> = bench
        .hosts
        .iter()
        .filter_map(|v| {
            let pid = v.pid()?;
            Some((
                status_kib(pid, "VmRSS:")?,
                status_kib(pid, "RssAnon:")?,
                status_kib(pid, "RssFile:")?,
            ))
        })
        .collect();

    // Failover: kill -9 of the leader -> next successful acquire on a survivor.
    let mut failover = Vec::new();
    for _ in 0..5 {
        let l = leader(bench).await?;
        let survivor = (l + 1) % 3;
        let mut c = client(bench, &bench.address(survivor)).await?;
        c.acquire(acquire_req("failover", "x")).await?;
        c.release(release_req("failover", "x")).await?;
        bench.hosts[l].kill();
        let killed = Instant::now();
        loop {
            match c.acquire(acquire_req("failover", "x")).await {
                Ok(r) if granted(r.get_ref()) => break,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
            if killed.elapsed() > Duration::from_secs(20) {
                return Err("no acquire within 20 s of the leader's death".into());
            }
        }
        failover.push(killed.elapsed());
        c.release(release_req("failover", "x")).await?;
        bench.start(l)?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let figures = Figures {
        acquire_p50: percentile(&mut acquire, 0.50),
        acquire_p99: percentile(&mut acquire, 0.99),
    };
    report("acquire (on leader)", acquire, "p50 <= 1 ms, p99 <= 3 ms");
    report("release (on leader)", release, "-");
    report("acquire (via follower)", via_follower, "-");
    report("hand-off", handoff, "p99 <= 20 ms");
    report("failover (kill -9 leader)", failover, "< 1 s");
    for (i, (total, anon, file)) in rss.iter().enumerate() {
        println!(
            "idle RSS voter {}: {:.1} MiB (anonymous {:.1}, file-backed {:.1})   target: < 12 MiB",
            i + 1,
            *total as f64 / 1024.0,
            *anon as f64 / 1024.0,
            *file as f64 / 1024.0
        );
    }
    Ok(figures)
}

/// The `q` quantile of `samples`, in milliseconds.
fn percentile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
}
