//! The etcd anchor of the lease benchmark: a 3-member etcd cluster on 127.0.0.1 (fsync on) and an
//! airlock-style reboot semaphore on it (one JSON key per group, changed by GET + compare-and-swap TXN),
//! with the acquire latency and throughput that baton's figures are compared against.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

/// Errors of the public functions (what the benchmark's `main` uses).
type Error = Box<dyn std::error::Error + Send + Sync>;

/// An error of the cluster or the semaphore: etcd's, or an expectation that failed. It is
/// `Send + Sync` (for spawned tasks) and converts into `Box<dyn Error>` with `?`.
#[derive(Debug)]
pub struct EtcdError(String);

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EtcdError {}

impl From<String> for EtcdError {
    fn from(message: String) -> Self {
        EtcdError(message)
    }
}

impl From<etcd_client::Error> for EtcdError {
    fn from(e: etcd_client::Error) -> Self {
        EtcdError(format!("etcd: {e}"))
    }
}

impl From<serde_json::Error> for EtcdError {
    fn from(e: serde_json::Error) -> Self {
        EtcdError(format!("semaphore JSON: {e}"))
    }
}

/// The etcd binary (Debian's `etcd-server`); `ETCD_BIN` overrides it.
fn etcd_binary() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// Client options: bounded waits, so that a dead cluster fails the benchmark instead of hanging it.
fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
}

/// A client of one endpoint, on its own connection.
async fn connect(endpoint: &str) -> Result<Client, EtcdError> {
    Ok(Client::connect([endpoint], Some(connect_options())).await?)
}

/// One running member: its process, data dir and log.
struct Member {
    child: Child,
    data_dir: PathBuf,
    log: PathBuf,
    client_url: String,
}

/// A 3-member etcd cluster on 127.0.0.1; its members are killed (and their data dirs removed) on drop.
pub struct EtcdCluster {
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts three members under `dir` (one data dir each, fsync on, `--log-level=error`, each
    /// member's stderr in `dir/etcd-N.log`) and waits until a linearizable GET succeeds on every
    /// member. Retries with fresh ports if a member dies at start (a port taken in between).
    pub async fn start(dir: &Path) -> Result<EtcdCluster, Error> {
        let bin = etcd_binary();
        if !bin.exists() {
            return Err(format!(
                "{} missing: `apt-get install -y etcd-server` (or set ETCD_BIN)",
                bin.display()
            )
            .into());
        }
        fs::create_dir_all(dir)?;
        let mut last_error = String::new();
        for attempt in 0..3 {
            let mut cluster = Self::spawn(&bin, dir, attempt)?;
            match cluster.wait_healthy(Duration::from_secs(30)).await {
                Ok(()) => return Ok(cluster),
                Err(e) => last_error = e.to_string(),
            }
            // `cluster` is dropped here: members killed, data dirs removed.
        }
        Err(format!("etcd cluster did not become healthy in 3 attempts: {last_error}").into())
    }

    /// The members' client URLs (`http://127.0.0.1:PORT`), member 0 first.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The client URL of the current raft leader (asked of each member in turn).
    pub async fn leader_endpoint(&self) -> Result<String, Error> {
        for endpoint in self.endpoints() {
            let Ok(mut client) = connect(&endpoint).await else {
                continue;
            };
            let Ok(status) = client.status().await else {
                continue;
            };
            let member = status.header().map(|h| h.member_id());
            if status.leader() != 0 && member == Some(status.leader()) {
                return Ok(endpoint);
            }
        }
        Err("no etcd member reports itself as leader".into())
    }

    /// The process ids of the members, member 0 first (for RSS readings).
    #[allow(dead_code)] // optional extra: not every caller reads etcd's RSS
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    fn spawn(bin: &Path, dir: &Path, attempt: u32) -> Result<EtcdCluster, Error> {
        // Hold all six listeners at once so the ports are distinct, then free them for etcd.
        let listeners = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?;
        drop(listeners);
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[3 + i]);
        let initial_cluster = (0..3)
            .map(|i| format!("m{i}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("etcd-anchor-{}-{attempt}", std::process::id());

        let mut cluster = EtcdCluster {
            members: Vec::new(),
        };
        for (i, client_port) in ports[..3].iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client_port}");
            let data_dir = dir.join(format!("etcd-{i}"));
            // A previous run's data would make the member rejoin an old cluster.
            match fs::remove_dir_all(&data_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            let log = dir.join(format!("etcd-{i}.log"));
            let stderr = File::create(&log)?;
            let child = Command::new(bin)
                .arg(format!("--name=m{i}"))
                .arg(format!("--data-dir={}", data_dir.display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={}", peer_url(i)))
                .arg(format!("--initial-advertise-peer-urls={}", peer_url(i)))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg(format!("--initial-cluster-token={token}"))
                .arg("--initial-cluster-state=new")
                .arg("--logger=zap")
                .arg("--log-outputs=stderr")
                .arg("--log-level=error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
            cluster.members.push(Member {
                child,
                data_dir,
                log,
                client_url,
            });
        }
        Ok(cluster)
    }

    /// Waits until every member answers a linearizable GET (which needs an elected leader
    /// and the member caught up with it).
    async fn wait_healthy(&mut self, limit: Duration) -> Result<(), EtcdError> {
        let deadline = Instant::now() + limit;
        for url in self.endpoints() {
            loop {
                if let Some(exit) = self.exited() {
                    return Err(exit.into());
                }
                let probe = async {
                    let mut client = connect(&url).await?;
                    client.get("etcd-anchor/health", None).await?;
                    Ok::<(), EtcdError>(())
                };
                match tokio::time::timeout(Duration::from_secs(2), probe).await {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) if Instant::now() > deadline => {
                        return Err(format!("{url}: {e}").into())
                    }
                    Err(_) if Instant::now() > deadline => {
                        return Err(format!("{url}: GET timed out").into())
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(())
    }

    /// A description of the first member that has exited, with the end of its log.
    fn exited(&mut self) -> Option<String> {
        for m in &mut self.members {
            if let Ok(Some(status)) = m.child.try_wait() {
                let log = fs::read_to_string(&m.log).unwrap_or_default();
                let mut tail: Vec<&str> = log.lines().rev().take(5).collect();
                tail.reverse();
                return Some(format!(
                    "etcd {} exited ({status}): {}",
                    m.client_url,
                    tail.join(" | ")
                ));
            }
        }
        None
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
            let _ = m.child.wait();
            let _ = fs::remove_dir_all(&m.data_dir);
        }
    }
}

/// The semaphore document, with airlock's field names.
#[derive(Serialize, Deserialize)]
struct SemaphoreDoc {
    total_slots: u64,
    holders: Vec<String>,
}

/// airlock's key of a group's semaphore: `com.coreos.airlock/groups/<group>/v1/semaphore`,
/// the group percent-escaped.
pub fn semaphore_key(group: &str) -> String {
    let mut escaped = String::new();
    for b in group.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    format!("com.coreos.airlock/groups/{escaped}/v1/semaphore")
}

/// An airlock-style counting semaphore of one group, through one etcd client (connection).
pub struct EtcdSemaphore {
    client: Client,
    key: String,
}

/// How often acquire/release retries a TXN that lost its compare to a concurrent writer.
const MAX_CONFLICTS: usize = 100;

impl EtcdSemaphore {
    /// Opens the semaphore of `group` through `client`, creating its key with `slots` free
    /// slots if it does not exist yet (TXN: create_revision == 0 -> PUT).
    pub async fn open(mut client: Client, group: &str, slots: u64) -> Result<Self, EtcdError> {
        let key = semaphore_key(group);
        let empty = serde_json::to_vec(&SemaphoreDoc {
            total_slots: slots,
            holders: Vec::new(),
        })?;
        let init = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), empty, None)]);
        client.txn(init).await?;
        Ok(EtcdSemaphore { client, key })
    }

    /// Linearizable GET of the document and its mod_revision.
    async fn read(&mut self) -> Result<(SemaphoreDoc, i64), EtcdError> {
        let reply = self.client.get(self.key.as_str(), None).await?;
        let kv = reply
            .kvs()
            .first()
            .ok_or_else(|| format!("semaphore key {} missing", self.key))?;
        Ok((serde_json::from_slice(kv.value())?, kv.mod_revision()))
    }

    /// PUT `doc` if the key is still at `revision`; false if another writer came first.
    async fn swap(&mut self, doc: &SemaphoreDoc, revision: i64) -> Result<bool, EtcdError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                self.key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(
                self.key.as_str(),
                serde_json::to_vec(doc)?,
                None,
            )]);
        Ok(self.client.txn(txn).await?.succeeded())
    }

    /// Takes a slot for `holder`: true if granted (or already held), false if all slots are taken.
    pub async fn acquire(&mut self, holder: &str) -> Result<bool, EtcdError> {
        for _ in 0..MAX_CONFLICTS {
            let (mut doc, revision) = self.read().await?;
            let at = match doc.holders.binary_search_by(|h| h.as_str().cmp(holder)) {
                Ok(_) => return Ok(true),
                Err(at) => at,
            };
            if doc.holders.len() as u64 >= doc.total_slots {
                return Ok(false);
            }
            doc.holders.insert(at, holder.to_string());
            if self.swap(&doc, revision).await? {
                return Ok(true);
            }
        }
        Err(format!(
            "acquire on {}: {MAX_CONFLICTS} conflicting writers in a row",
            self.key
        )
        .into())
    }

    /// Gives back `holder`'s slot; true if it held one.
    pub async fn release(&mut self, holder: &str) -> Result<bool, EtcdError> {
        for _ in 0..MAX_CONFLICTS {
            let (mut doc, revision) = self.read().await?;
            let Ok(at) = doc.holders.binary_search_by(|h| h.as_str().cmp(holder)) else {
                return Ok(false);
            };
            doc.holders.remove(at);
            if self.swap(&doc, revision).await? {
                return Ok(true);
            }
        }
        Err(format!(
            "release on {}: {MAX_CONFLICTS} conflicting writers in a row",
            self.key
        )
        .into())
    }
}

/// Acquire latencies on the leader (as baton's "acquire (on leader)"): one client, group "bench"
/// (1 slot), holders h0..h49 in turn; each acquire is timed, then released untimed.
/// 20 warm-up rounds are not counted.
pub async fn acquire_latencies(
    cluster: &EtcdCluster,
    iterations: usize,
) -> Result<Vec<Duration>, Error> {
    let leader = cluster.leader_endpoint().await?;
    acquire_latencies_on(&leader, iterations).await
}

/// As [`acquire_latencies`], through the member at `endpoint` (e.g. a follower).
pub async fn acquire_latencies_on(
    endpoint: &str,
    iterations: usize,
) -> Result<Vec<Duration>, Error> {
    let mut semaphore = EtcdSemaphore::open(connect(endpoint).await?, "bench", 1).await?;
    for _ in 0..20 {
        semaphore.acquire("warm").await?;
        semaphore.release("warm").await?;
    }
    let mut samples = Vec::with_capacity(iterations);
    for n in 0..iterations {
        let holder = format!("h{}", n % 50);
        let t = Instant::now();
        let granted = semaphore.acquire(&holder).await?;
        samples.push(t.elapsed());
        if !granted {
            return Err(format!("{holder} not granted in an empty group").into());
        }
        semaphore.release(&holder).await?;
    }
    Ok(samples)
}

/// Acquires per second of `clients` concurrent tasks on the leader, each with its own connection
/// and its own group (`tp-N`, 1 slot), looping acquire + release for `duration`. Only acquires
/// are counted; the rate is over the wall time until the last task's final round ended.
pub async fn throughput(
    cluster: &EtcdCluster,
    clients: usize,
    duration: Duration,
) -> Result<f64, Error> {
    let leader = cluster.leader_endpoint().await?;
    // Connect and initialise every group before the clock starts.
    let mut semaphores = Vec::with_capacity(clients);
    for i in 0..clients {
        let client = connect(&leader).await?;
        semaphores.push(EtcdSemaphore::open(client, &format!("tp-{i}"), 1).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = semaphores
        .into_iter()
        .map(|mut semaphore| {
            tokio::spawn(async move {
                let mut acquired: u64 = 0;
                let mut n: usize = 0;
                while Instant::now() < deadline {
                    let holder = format!("h{}", n % 50);
                    n += 1;
                    if !semaphore.acquire(&holder).await? {
                        return Err(format!("{holder} not granted in its own group").into());
                    }
                    acquired += 1;
                    semaphore.release(&holder).await?;
                }
                Ok::<u64, EtcdError>(acquired)
            })
        })
        .collect();
    let mut total: u64 = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
