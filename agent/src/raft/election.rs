//! Elections with a pre-vote: a voter stands only when a majority has lost the leader too.
//!
//! openraft 0.9 has no pre-vote. A voter cut off from the others raises its
//! term at every election timeout, and when it comes back that higher term
//! makes a healthy leader step down (0.4-0.6 s without a leader each time).
//! So openraft's own election timer is off (`enable_elect = false`) and this
//! module decides when to stand: after hearing no leader for the lease plus
//! 1-1.5 election timeouts, a voter asks the others whether they would vote
//! for it (`Raft.PreVote`, which changes nothing on the receiver) and calls
//! openraft's election only when a majority says yes. A voter says yes only
//! when it has heard no leader for longer than openraft's leader lease (so
//! the real vote that follows is not refused by that lease) and the
//! candidate's log is at least as up to date as its own. "Heard" is
//! openraft's own clock (the time its vote was last confirmed by a leader),
//! so the timing is exactly what openraft's timer would have used.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use baton_proto::v1::raft_client::RaftClient;

use crate::clock::Instant;
use crate::raft::types::{from_payload, to_payload, LogId, NodeId, Raft, VoterNode};
use crate::transport::Dialer;

/// What this voter's raft core says about leadership right now.
struct Standing {
    leads: bool,
    /// How long since a leader last confirmed this voter's vote (or since
    /// it voted); `None` when it never had a vote.
    heard_ago: Option<Duration>,
    /// Whether the vote is a leader's (committed) rather than a candidate's.
    follows: bool,
}

async fn standing(raft: &Raft) -> Option<Standing> {
    raft.with_raft_state(|state| {
        let now = Instant::now();
        Standing {
            leads: state.server_state == ServerState::Leader,
            heard_ago: state
                .vote_last_modified()
                .map(|at| now.saturating_duration_since(at)),
            follows: state.vote_ref().is_committed(),
        }
    })
    .await
    .ok()
}

/// "Would you vote for me?"
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    pub last_log_id: Option<LogId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreVoteResponse {
    pub granted: bool,
}

/// The pre-vote rule: grant only when this voter does not lead, has not
/// heard a leader for longer than the leader lease, and the candidate's log
/// is at least as up to date as its own.
pub fn grants(
    leads: bool,
    no_leader_for: Option<Duration>,
    lease: Duration,
    candidate_log: Option<LogId>,
    own_log: Option<LogId>,
) -> bool {
    !leads && no_leader_for.is_none_or(|ago| ago > lease) && candidate_log >= own_log
}

/// The election timing, from the cluster settings.
#[derive(Debug, Clone, Copy)]
pub struct ElectionTiming {
    /// openraft's leader lease: how long a voter refuses votes after hearing
    /// a leader (openraft sets it to `election_timeout_max`).
    pub lease: Duration,
    /// The configured election timeout: a voter stands after hearing no
    /// leader for the lease plus 1 to 1.5 times this, so two followers
    /// rarely stand at once. Not less: with only the lease plus 0-0.5 of
    /// it (450-600 ms at the defaults), a leader starved of CPU (two cores,
    /// three voters and a thousand hosts in `tests/queue.rs`) missed its
    /// heartbeats that long every second or two, and leadership churned
    /// through 14 terms in 40 s without settling.
    pub timeout: Duration,
    /// How long to wait for pre-vote answers.
    pub ask_timeout: Duration,
}

impl ElectionTiming {
    /// `election_timeout` is the configured one; openraft's maximum (and so
    /// its lease) is 1.5 times it.
    pub fn new(election_timeout: Duration) -> Self {
        ElectionTiming {
            lease: election_timeout.saturating_mul(3) / 2,
            timeout: election_timeout,
            ask_timeout: election_timeout,
        }
    }

    /// How long without a leader before standing.
    fn patience(&self) -> Duration {
        self.lease + self.timeout + (self.timeout / 2).mul_f64(random_fraction())
    }

    /// How long to wait after an attempt that did not make a leader.
    fn retry_after(&self) -> Duration {
        self.timeout / 2 + (self.timeout / 2).mul_f64(random_fraction())
    }
}

/// A number in [0, 1), different on every call and every voter. Timing
/// jitter needs no more than std's randomly keyed hasher.
fn random_fraction() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// This voter's answer to a pre-vote request.
pub async fn answer(
    raft: &Raft,
    timing: &ElectionTiming,
    request: &PreVoteRequest,
) -> PreVoteResponse {
    // The raft core is gone: never help anyone stand.
    let Some(me) = standing(raft).await else {
        return PreVoteResponse { granted: false };
    };
    let own_log = raft.data_metrics().borrow().last_log;
    let granted = grants(
        me.leads,
        me.heard_ago,
        timing.lease,
        request.last_log_id,
        own_log,
    );
    debug!(
        candidate = request.candidate,
        granted, "pre-vote asked; no leader heard for {:?}", me.heard_ago
    );
    PreVoteResponse { granted }
}

/// Watches for a lost leader and stands for election after a successful
/// pre-vote. Runs for the life of the voter.
pub async fn run(raft: Raft, dialer: Dialer, timing: ElectionTiming) {
    let tick = (timing.timeout / 16).max(Duration::from_millis(5));
    let mut patience = timing.patience();
    // After an election that made no leader: random too, or two candidates
    // that split the vote would try again in step and split it again.
    let mut candidate_patience = timing.retry_after() * 2;
    // Not before this: set after a failed attempt, so a voter whose
    // pre-votes are refused does not ask again on every tick.
    let mut next_try = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let Some(now) = standing(&raft).await else {
            return; // the raft core stopped
        };
        // A leader's vote goes quiet for a candidate's timeout, a
        // follower's for the lease plus that (openraft's own rule).
        let quiet = now.heard_ago.unwrap_or(Duration::MAX);
        let wait = if now.follows {
            patience
        } else {
            candidate_patience
        };
        if now.leads || quiet < wait || Instant::now() < next_try {
            continue;
        }
        let metrics = raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let me = metrics.id;
        if !membership.voter_ids().any(|id| id == me) {
            continue;
        }
        patience = timing.patience();
        candidate_patience = timing.retry_after() * 2;
        next_try = Instant::now() + timing.retry_after();
        let request = PreVoteRequest {
            candidate: me,
            last_log_id: raft.data_metrics().borrow().last_log,
        };
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let mut asks: FuturesUnordered<_> = voters
            .iter()
            .filter(|id| **id != me)
            .filter_map(|id| membership.get_node(id).cloned())
            .map(|node| {
                let dialer = dialer.clone();
                let request = request.clone();
                async move { pre_vote(&dialer, &node, &request, timing.ask_timeout).await }
            })
            .collect();
        // Stand as soon as a majority agrees: waiting for the slowest
        // answer (the dead leader's timeout) would make every follower
        // that lost the leader stand at the same moment, and split the vote.
        let mut yes = 1;
        while yes * 2 <= voters.len() {
            match asks.next().await {
                Some(Ok(PreVoteResponse { granted: true })) => yes += 1,
                Some(_) => {}
                None => break,
            }
        }
        drop(asks);
        if yes * 2 > voters.len() {
            info!(
                BATON_NODE = me,
                "no leader heard for {quiet:?}; {yes} of {} voters agree: standing for election",
                voters.len()
            );
            if raft.trigger().elect().await.is_err() {
                return; // the raft core stopped
            }
        } else {
            debug!(
                BATON_NODE = me,
                "no leader heard for {quiet:?}, but only {yes} of {} voters would vote: not standing",
                voters.len()
            );
        }
    }
}

/// Asks `node` whether it would vote for `request.candidate`; any failure
/// to get an answer counts as "no".
pub async fn pre_vote(
    dialer: &Dialer,
    node: &VoterNode,
    request: &PreVoteRequest,
    timeout: Duration,
) -> Result<PreVoteResponse, tonic::Status> {
    let payload = to_payload(request).map_err(|e| tonic::Status::internal(e.to_string()))?;
    let channel = dialer
        .channel(&node.address)
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut call = tonic::Request::new(payload);
    call.set_timeout(timeout);
    let reply = RaftClient::new(channel).pre_vote(call).await?;
    from_payload(reply.get_ref()).map_err(|e| tonic::Status::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    const LEASE: Duration = Duration::from_millis(450);
    const LONG: Option<Duration> = Some(Duration::from_millis(500));
    const SHORT: Option<Duration> = Some(Duration::from_millis(100));

    #[test]
    fn a_voter_that_hears_its_leader_refuses() {
        assert!(!grants(false, SHORT, LEASE, log(3, 10), log(3, 10)));
    }

    #[test]
    fn the_leader_refuses() {
        assert!(!grants(true, LONG, LEASE, log(3, 10), log(3, 10)));
    }

    #[test]
    fn a_voter_that_lost_its_leader_grants_an_up_to_date_candidate() {
        assert!(grants(false, LONG, LEASE, log(3, 10), log(3, 10)));
        assert!(grants(false, LONG, LEASE, log(4, 2), log(3, 10)));
        assert!(grants(false, LONG, LEASE, log(3, 11), None));
        // Never had a vote (a new voter): nothing to be loyal to.
        assert!(grants(false, None, LEASE, log(1, 1), None));
    }

    #[test]
    fn a_candidate_with_an_older_log_is_refused() {
        assert!(!grants(false, LONG, LEASE, log(3, 9), log(3, 10)));
        assert!(!grants(false, LONG, LEASE, log(2, 50), log(3, 10)));
        assert!(!grants(false, LONG, LEASE, None, log(1, 1)));
    }

    #[test]
    fn patience_is_openraft_s_lease_plus_one_to_one_and_a_half_timeouts() {
        let timing = ElectionTiming::new(Duration::from_millis(300));
        assert_eq!(timing.lease, Duration::from_millis(450));
        for _ in 0..1000 {
            let patience = timing.patience();
            assert!(patience >= Duration::from_millis(750));
            assert!(patience < Duration::from_millis(900));
        }
    }

    #[test]
    fn jitter_differs_between_calls() {
        let draws: std::collections::BTreeSet<u64> =
            (0..100).map(|_| (random_fraction() * 1e9) as u64).collect();
        assert!(draws.len() > 90);
    }
}
