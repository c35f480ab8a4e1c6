//! Admin clients to the voters and the probes that time answered writes and leaders.

use std::time::{Duration, Instant};

use baton::{Dialer, TlsMode};
use baton_proto::v1 as pb;
use pb::admin_client::AdminClient;
use pb::lease_client::LeaseClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::{PROBE_EVERY, PROBE_GROUP, VOTERS};

/// Channels to the voters (at their bridge addresses) as the test's admin.
#[derive(Clone)]
pub(super) struct Clients {
    pub(super) tls: TlsMode,
    pub(super) dialer: Dialer,
    pub(super) addresses: Vec<String>,
}

impl Clients {
    /// Short timeouts: a client that fails over fast, so that the figures
    /// are the cluster's, not the client's patience.
    pub(super) fn new(tls: &TlsMode, addresses: Vec<String>) -> Clients {
        let dialer = Dialer::new(
            Duration::from_millis(500),
            Duration::from_secs(2),
            tls.clone(),
        );
        Clients {
            tls: tls.clone(),
            dialer,
            addresses,
        }
    }

    /// The same clients on new connections: a connection that lived through
    /// a cut link can wait seconds for TCP's next retransmission, which
    /// would be measured as the cluster's time.
    pub(super) fn fresh(&self) -> Clients {
        Clients::new(&self.tls, self.addresses.clone())
    }

    pub(super) fn channel(&self, i: usize) -> Channel {
        self.dialer
            .channel(&self.addresses[i])
            .expect("a channel to a voter")
    }

    pub(super) fn lease(&self, i: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(i))
    }

    pub(super) fn admin(&self, i: usize) -> AdminClient<Channel> {
        AdminClient::new(self.channel(i))
    }

    /// Voter `i`'s own view (term, leader, applied index), if it answers.
    pub(super) async fn stale(&self, i: usize) -> Option<pb::StatusResponse> {
        self.stale_within(i, Duration::from_millis(800)).await
    }

    pub(super) async fn stale_within(
        &self,
        i: usize,
        within: Duration,
    ) -> Option<pb::StatusResponse> {
        let mut lease = self.lease(i);
        let call = lease.status(pb::StatusRequest { stale: true });
        let reply = tokio::time::timeout(within, call).await;
        Some(reply.ok()?.ok()?.into_inner())
    }

    /// A linearizable status (the leader's) through the first of `via` that answers.
    pub(super) async fn linearizable(&self, via: &[usize]) -> Option<pb::StatusResponse> {
        for &i in via {
            let mut lease = self.lease(i);
            let call = lease.status(pb::StatusRequest { stale: false });
            if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_millis(1_500), call).await {
                if reply.get_ref().leader.is_some() {
                    return Some(reply.into_inner());
                }
            }
        }
        None
    }

    /// The leader's status, through `via`, waiting for one up to `within`.
    pub(super) async fn leader_status(
        &self,
        via: &[usize],
        within: Duration,
    ) -> pb::StatusResponse {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.linearizable(via).await {
                return status;
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The voter index of a status's leader.
pub(super) fn leader_of(status: &pb::StatusResponse) -> usize {
    status.leader.expect("a leader") as usize - 1
}

pub(super) fn others(voter: usize) -> Vec<usize> {
    (0..VOTERS).filter(|&i| i != voter).collect()
}

pub(super) fn all() -> Vec<usize> {
    (0..VOTERS).collect()
}

/// Sends a probe write (an admin SetMax) every [`PROBE_EVERY`] to `targets`
/// in turn, each on its own, for `window` (or until the first is answered
/// when `first_only`); returns when each answered write was answered.
pub(super) async fn probe_writes(
    clients: &Clients,
    targets: &[usize],
    window: Duration,
    first_only: bool,
) -> Vec<Instant> {
    let end = Instant::now() + window;
    let mut probes = JoinSet::new();
    let mut answered = Vec::new();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= end {
                    break;
                }
                let mut admin = clients.admin(targets[n % targets.len()]);
                let max_holders = 1 + (n % 2) as u32;
                n += 1;
                probes.spawn(async move {
                    let request = pb::SetMaxRequest { group: PROBE_GROUP.into(), max_holders };
                    admin.set_max(request).await.is_ok().then(Instant::now)
                });
            }
            Some(joined) = probes.join_next() => {
                if let Ok(Some(at)) = joined {
                    answered.push(at);
                    if first_only {
                        break;
                    }
                }
            }
        }
    }
    probes.abort_all();
    answered
}

/// Polls every voter's own view for `window` and returns the longest
/// stretch in which none of those that answered was leader in the highest
/// term any of them knew (a deposed leader that still thinks it leads, in
/// an older term, does not count).
pub(super) async fn longest_leaderless(clients: &Clients, window: Duration) -> Duration {
    let start = Instant::now();
    let end = start + window;
    let mut since: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    while Instant::now() < end {
        let within = Duration::from_millis(200);
        let (a, b, c) = tokio::join!(
            clients.stale_within(0, within),
            clients.stale_within(1, within),
            clients.stale_within(2, within)
        );
        let now = Instant::now();
        let views: Vec<pb::StatusResponse> = [a, b, c].into_iter().flatten().collect();
        let term = views.iter().map(|v| v.term).max().unwrap_or(0);
        let led = views
            .iter()
            .any(|v| v.term == term && v.leader == Some(v.served_by));
        match (led, since) {
            (false, None) => since = Some(now),
            (true, Some(from)) => {
                longest = longest.max(now - from);
                since = None;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(from) = since {
        longest = longest.max(end.saturating_duration_since(from));
    }
    longest
}

/// The longest stretch of [start, end] without an answered write.
pub(super) fn longest_gap(start: Instant, end: Instant, mut answered: Vec<Instant>) -> Duration {
    answered.sort();
    let mut last = start;
    let mut gap = Duration::ZERO;
    for at in answered.into_iter().filter(|&at| at <= end) {
        if at > last {
            gap = gap.max(at - last);
            last = at;
        }
    }
    gap.max(end.saturating_duration_since(last))
}

pub(super) fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}
