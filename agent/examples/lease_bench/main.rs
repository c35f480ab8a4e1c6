//! Lease benchmark: real voters beside the etcd semaphore, one client and a fleet queued at once.
//!
//! Starts a 3-voter loopback cluster of real `baton agent` processes
//! (release build, fsync on), plaintext and then with mutual TLS, and prints
//! p50/p99 of acquire, release, hand-off and leader failover, 16-client
//! throughput, each voter's RSS after load and idle (start-up pages out,
//! and the first acquire after that), and (`--waiters`) a patch day: N hosts
//! queued at once in one group (see `waiters`), and (`--reporters`) N hosts
//! reporting to the fleet view (see `fleet`). In the same run it starts a
//! 3-member etcd (Debian's `etcd-server`) and measures the semaphore
//! locksmith and airlock use (see `etcd`), and prints baton/etcd ratios.
//!
//! Run: `cargo build --release --bin baton && cargo run --release --example lease_bench -- [ITERATIONS] [--waiters 10,100,1000,10000] [--reporters 1000,10000] [--no-etcd]`

mod etcd;
mod fleet;
mod waiters;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton::{Dialer, FleetLayout, HostConfig, LocalHost, Role, TlsMode, TlsState};
use baton_proto::v1 as pb;
use baton_testkit::proc_stat::status_kib;
use pb::lease_client::LeaseClient;
use tonic::transport::Channel;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Concurrent clients of the throughput figure, each with its own group.
const CLIENTS: usize = 16;
/// How long the throughput figure runs.
const THROUGHPUT_FOR: Duration = Duration::from_secs(5);

/// What to run.
struct Args {
    iterations: usize,
    waiters: Vec<usize>,
    reporters: Vec<usize>,
    etcd: bool,
}

impl Args {
    fn parse() -> Result<Args, Error> {
        let mut args = Args {
            iterations: 500,
            waiters: Vec::new(),
            reporters: Vec::new(),
            etcd: true,
        };
        let mut given = std::env::args().skip(1);
        while let Some(arg) = given.next() {
            match arg.as_str() {
                "--waiters" | "--reporters" => {
                    let list = given
                        .next()
                        .ok_or_else(|| format!("{arg} needs a list: 10,100,1000"))?;
                    let list = list
                        .split(',')
                        .map(|n| n.trim().parse::<usize>())
                        .collect::<Result<_, _>>()?;
                    match arg.as_str() {
                        "--waiters" => args.waiters = list,
                        _ => args.reporters = list,
                    }
                }
                "--no-etcd" => args.etcd = false,
                number => args.iterations = number.parse()?,
            }
        }
        Ok(args)
    }
}

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
        released: None,
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
    /// When each voter was last started.
    started: Vec<Instant>,
    dialer: Dialer,
}

impl Bench {
    fn address(&self, i: usize) -> String {
        self.layout.voters()[i].address.clone()
    }

    /// Starts voter `i` from its own copy of the binary, as on a fleet
    /// where each voter is a host of its own: a page of a file mapped by
    /// three processes is not paged out by one of them (`cli::resident`).
    fn start(&mut self, i: usize) -> Result<(), Error> {
        let own = self.hosts[i].dir.join("baton");
        if !own.exists() {
            std::fs::copy(&self.bin, &own)?;
        }
        self.hosts[i].start(&own, RUST_LOG)?;
        self.started[i] = Instant::now();
        Ok(())
    }

    /// Resident memory of each running voter: (total, anonymous,
    /// file-backed) KiB.
    fn rss(&self) -> Vec<(u64, u64, u64)> {
        self.hosts
            .iter()
            .filter_map(|v| {
                let pid = v.pid()?;
                Some((
                    status_kib(pid, "VmRSS:")?,
                    status_kib(pid, "RssAnon:")?,
                    status_kib(pid, "RssFile:")?,
                ))
            })
            .collect()
    }
}

/// The figures of one system, for the comparisons at the end.
struct Figures {
    acquire_p50: f64,
    acquire_p99: f64,
    throughput: f64,
}

impl Figures {
    fn compare(&self, name: &str, anchor: &Figures, anchor_name: &str) {
        println!(
            "{name} / {anchor_name}: acquire p50 {:.3} / {:.3} ms = {:.2}x, p99 {:.3} / {:.3} ms = {:.2}x, {CLIENTS}-client throughput {:.0} / {:.0} acquires/s = {:.2}x",
            self.acquire_p50,
            anchor.acquire_p50,
            self.acquire_p50 / anchor.acquire_p50,
            self.acquire_p99,
            anchor.acquire_p99,
            self.acquire_p99 / anchor.acquire_p99,
            self.throughput,
            anchor.throughput,
            self.throughput / anchor.throughput,
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args = Args::parse()?;
    let bin = baton_binary()?;
    // The same benchmark twice in one run: plaintext, then mutual TLS (and
    // the patch days on the TLS cluster, as a fleet runs it).
    let (plain, _, _) = cluster_run(&bin, false, &args).await?;
    let (tls, rolls, fleets) = cluster_run(&bin, true, &args).await?;
    let anchor = if args.etcd {
        Some(etcd_run(args.iterations).await?)
    } else {
        None
    };

    println!("\n== summary");
    tls.compare("baton TLS", &plain, "baton plaintext");
    if let Some(etcd) = &anchor {
        plain.compare("baton plaintext", etcd, "etcd semaphore");
        tls.compare("baton TLS", etcd, "etcd semaphore");
        println!("targets: baton acquire p50 <= 0.5x etcd's, p99 < 3 ms, throughput >= 2x etcd's");
    }
    if !rolls.is_empty() {
        println!("\npatch day (TLS cluster; each host: Wait stream, Acquire to take the slot, hold 5 ms, Release):");
        waiters::RollFigures::print_header();
        for roll in &rolls {
            roll.print_row();
        }
        println!("targets at 10,000: <= 3 entries per host, gap p99 < 20 ms, >= 100 hosts/s, <= 1 entry/s while waiting, voter RSS < 64 MiB");
    }
    if !fleets.is_empty() {
        println!("\nfleet view (TLS cluster; each host reports once per 30 s interval, spread evenly; the table full at the end):");
        fleet::FleetFigures::print_header();
        for figures in &fleets {
            figures.print_row();
        }
    }
    Ok(())
}

/// The etcd anchor: a 3-member cluster on loopback, the semaphore's acquire
/// latencies and throughput, measured as baton's are.
async fn etcd_run(iterations: usize) -> Result<Figures, Error> {
    let dir = std::env::temp_dir().join(format!("baton-bench-etcd-{}", std::process::id()));
    let cluster = etcd::EtcdCluster::start(&dir).await?;
    println!("\n== etcd semaphore (3 members on 127.0.0.1, fsync on; linearizable GET + TXN on mod_revision, as airlock)");
    let mut acquire = etcd::acquire_latencies(&cluster, iterations).await?;
    let throughput = etcd::throughput(&cluster, CLIENTS, THROUGHPUT_FOR).await?;
    let figures = Figures {
        acquire_p50: percentile(&mut acquire, 0.50),
        acquire_p99: percentile(&mut acquire, 0.99),
        throughput,
    };
    report("acquire (on leader)", acquire, "-");
    println!("throughput, {CLIENTS} clients       {throughput:.0} acquires/s");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}

/// Starts a 3-voter cluster (with or without TLS), runs the benchmark on
/// it and stops it.
async fn cluster_run(
    bin: &Path,
    tls: bool,
    args: &Args,
) -> Result<(Figures, Vec<waiters::RollFigures>, Vec<fleet::FleetFigures>), Error> {
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
        started: vec![Instant::now(); hosts.len()],
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
    let rolls = if tls { args.waiters.as_slice() } else { &[] };
    let reporters = if tls { args.reporters.as_slice() } else { &[] };
    let result = async {
        let (figures, rolls) = run(&mut bench, args.iterations, rolls).await?;
        let mut fleets = Vec::new();
        for &hosts in reporters {
            fleets.push(fleet::measure(&bench, hosts).await?);
        }
        Ok((figures, rolls, fleets))
    }
    .await;
    drop(bench);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Acquires per second of [`CLIENTS`] concurrent clients on the leader,
/// each on its own connection and in its own group, looping acquire and
/// release for [`THROUGHPUT_FOR`] (counted as the etcd anchor counts).
async fn throughput(bench: &Bench, leader: usize) -> Result<f64, Error> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client(bench, &bench.address(leader)).await?);
    }
    let start = Instant::now();
    let deadline = start + THROUGHPUT_FOR;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                let group = format!("tp-{i}");
                let mut acquired = 0u64;
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let holder = format!("h{}", n % 50);
                    n += 1;
                    let reply = c.acquire(acquire_req(&group, &holder)).await?.into_inner();
                    if !granted(&reply) {
                        return Err::<u64, Error>(
                            format!("{holder} not granted in its own group").into(),
                        );
                    }
                    acquired += 1;
                    c.release(release_req(&group, &holder)).await?;
                }
                Ok(acquired)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn run(
    bench: &mut Bench,
    iterations: usize,
    rolls: &[usize],
) -> Result<(Figures, Vec<waiters::RollFigures>), Error> {
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

    // Hand-off: A holds, B waits on a Wait stream at another voter; from
    // the moment A's release is committed (its reply) until B, told by its
    // stream, has taken the slot (its Acquire's reply).
    let mut handoff = Vec::new();
    let mut waiter = client(bench, &bench.address((l + 2) % 3)).await?;
    for _ in 0..(iterations / 5).max(20) {
        on_leader.acquire(acquire_req("handoff", "A")).await?;
        let mut stream = waiter
            .wait(pb::WaitRequest {
                group: "handoff".into(),
                holder: "B".into(),
                machine_id: String::new(),
                released: None,
            })
            .await?
            .into_inner();
        match stream.message().await? {
            Some(pb::WaitEvent {
                kind: Some(pb::wait_event::Kind::Queued(_)),
            }) => {}
            other => return Err(format!("B not queued while A holds: {other:?}").into()),
        }
        on_leader.release(release_req("handoff", "A")).await?;
        let committed = Instant::now();
        match stream.message().await? {
            Some(pb::WaitEvent {
                kind: Some(pb::wait_event::Kind::Granted(_)),
            }) => {}
            other => return Err(format!("B not handed the slot: {other:?}").into()),
        }
        let reply = waiter
            .acquire(acquire_req("handoff", "B"))
            .await?
            .into_inner();
        handoff.push(committed.elapsed());
        if !granted(&reply) {
            return Err("B could not take the slot handed to it".into());
        }
        waiter.release(release_req("handoff", "B")).await?;
    }

    // RSS after the load settles, before start-up pages go.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_load = bench.rss();
    // Idle RSS: once every voter has run long enough to page out its
    // start-up pages (the daemon does so 30 s after it starts); then the
    // cost of that, an acquire on the leader that faults its code back in.
    let settled = Duration::from_secs(40);
    let youngest = bench
        .started
        .iter()
        .max()
        .copied()
        .unwrap_or_else(Instant::now);
    tokio::time::sleep(settled.saturating_sub(youngest.elapsed())).await;
    let idle = bench.rss();
    let t = Instant::now();
    on_leader.acquire(acquire_req("bench", "cold")).await?;
    let cold_acquire = t.elapsed();
    on_leader.release(release_req("bench", "cold")).await?;

    let throughput = throughput(bench, l).await?;
    let mut roll_figures = Vec::new();
    for &hosts in rolls {
        roll_figures.push(waiters::roll(bench, hosts).await?);
    }

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
        throughput,
    };
    report("acquire (on leader)", acquire, "p50 <= 1 ms, p99 <= 3 ms");
    report("release (on leader)", release, "-");
    report("acquire (via follower)", via_follower, "-");
    report("hand-off", handoff, "p99 <= 20 ms");
    report("failover (kill -9 leader)", failover, "< 1 s");
    print_rss("RSS 3 s after load, voter", "", &after_load);
    print_rss("idle RSS voter", " (start-up pages out)", &idle);
    println!(
        "first acquire after that      {:.3} ms",
        cold_acquire.as_secs_f64() * 1000.0
    );
    println!("throughput, {CLIENTS} clients       {throughput:.0} acquires/s");
    Ok((figures, roll_figures))
}

/// One line per voter: `label N suffix: total (anonymous, file-backed)`.
fn print_rss(label: &str, suffix: &str, rss: &[(u64, u64, u64)]) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (i, (total, anon, file)) in rss.iter().enumerate() {
        println!(
            "{label} {}{suffix}: {:.1} MiB (anonymous {:.1}, file-backed {:.1})   target idle: < 12 MiB",
            i + 1,
            mib(*total),
            mib(*anon),
            mib(*file)
        );
    }
}

/// The `q` quantile of `samples`, in milliseconds.
fn percentile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
}
