//! What a voter with no state does at start: form a cluster, join one, or refuse.
//!
//! A voter that lost its state dir has forgotten its vote; if it came back
//! under the same id it could vote twice in one term and break raft's
//! safety. The cluster knows whether a voter ever stored log entries (the
//! leader's `matched` index, and the replicated record of voters that did,
//! which a leader that just restarted also has), so a fresh voter asks
//! before it does anything, and takes no raft traffic while it asks. And it
//! forms a new cluster only when a majority of the configured voters
//! (itself included) answer and none knows a cluster: a voter that lost its
//! state while the others are down waits for them instead of forming a
//! second cluster of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_proto::v1 as pb;
use baton_proto::v1::lease_client::LeaseClient;

use crate::config::Settings;
use crate::raft::types::NodeId;
use crate::transport::Dialer;

/// What a voter without state should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A majority of the configured voters answered and none knows of a
    /// cluster: form it from the config.
    FormCluster,
    /// Too few voters answer to tell: ask again.
    Wait { answered: usize, voters: usize },
    /// A cluster exists and lists this voter, which never stored anything:
    /// the leader will send it the log (staggered first start).
    CatchUp { leader: NodeId },
    /// A cluster exists without this voter: wait for `baton voter add`.
    AwaitAdd { leader: NodeId },
    /// A cluster exists, lists this voter, and this voter stored entries
    /// before (the leader's matched index for it, or the cluster's record
    /// of voters that stored entries): its state was lost.
    Refuse {
        leader: NodeId,
        matched: Option<u64>,
    },
}

/// Decides from the answers of the other voters (their status, as the
/// leader sees it). `None` answers are voters that did not reply.
pub fn decide(me: NodeId, answers: &[Option<pb::StatusResponse>]) -> Start {
    let Some(status) = answers
        .iter()
        .flatten()
        .find(|s| s.leader.is_some() && s.last_applied > 0)
    else {
        let voters = answers.len() + 1;
        let answered = answers.iter().flatten().count() + 1;
        return if answered * 2 > voters {
            Start::FormCluster
        } else {
            Start::Wait { answered, voters }
        };
    };
    let leader = status.leader.unwrap_or_default();
    match status.voters.iter().find(|v| v.id == me) {
        None => Start::AwaitAdd { leader },
        Some(voter) => match voter.matched.filter(|m| *m > 0) {
            Some(matched) => Start::Refuse {
                leader,
                matched: Some(matched),
            },
            None if voter.stored => Start::Refuse {
                leader,
                matched: None,
            },
            None => Start::CatchUp { leader },
        },
    }
}

/// Asks the other configured voters, in parallel, for their own view
/// (fast, no leader needed); where one knows a formed cluster, asks it
/// again for the leader's view, which carries each voter's `matched`.
pub async fn probe(settings: &Settings, me: NodeId, dialer: &Dialer) -> Start {
    let others: BTreeMap<NodeId, String> = settings
        .cluster
        .voters
        .iter()
        .filter(|v| v.id != me)
        .map(|v| (v.id, v.address.clone()))
        .collect();
    let budget = settings.cluster.connect_timeout + settings.cluster.request_timeout;
    let asks = others
        .values()
        .map(|address| ask(dialer, address, true, budget));
    let own_views = futures::future::join_all(asks).await;
    let formed = others.values().zip(&own_views).find(|(_, s)| {
        s.as_ref()
            .is_some_and(|s| s.leader.is_some() && s.last_applied > 0)
    });
    let Some((address, own_view)) = formed else {
        return decide(me, &own_views);
    };
    // The leader's view, confirmed by a quorum.
    if let Some(leader_view) = ask(dialer, address, false, LINEARIZABLE_BUDGET.min(budget)).await {
        return decide(me, &[Some(leader_view)]);
    }
    // None can be confirmed while the quorum needs this voter, which takes
    // no raft traffic until it has decided (a voter added while it asks
    // makes a joint membership that counts it): then the leader's own
    // view, which has `matched` too, rather than waiting out the budget.
    let leader = own_view.as_ref().and_then(|view| {
        let id = view.leader?;
        view.voters
            .iter()
            .find(|v| v.id == id && !v.address.is_empty())
            .map(|v| v.address.clone())
            .or_else(|| others.get(&id).cloned())
            .map(|at| (id, at))
    });
    if let Some((id, at)) = leader {
        if let Some(view) = ask(dialer, &at, true, budget).await {
            if view.leader == Some(id) && view.last_applied > 0 {
                return decide(me, &[Some(view)]);
            }
        }
    }
    // Else the peer's own view still says that a cluster exists (without
    // `matched`).
    decide(me, std::slice::from_ref(own_view))
}

/// How long a voter without state waits for the leader's confirmed view
/// before it takes the leader's own (a confirmed read takes milliseconds
/// when a quorum answers).
const LINEARIZABLE_BUDGET: Duration = Duration::from_secs(1);

async fn ask(
    dialer: &Dialer,
    address: &str,
    stale: bool,
    budget: Duration,
) -> Option<pb::StatusResponse> {
    let channel = dialer.channel(address).ok()?;
    let mut client = LeaseClient::new(channel);
    let call = client.status(pb::StatusRequest { stale });
    match tokio::time::timeout(budget, call).await {
        Ok(Ok(reply)) => Some(reply.into_inner()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(leader: u64, voters: &[(u64, Option<u64>)]) -> pb::StatusResponse {
        pb::StatusResponse {
            leader: Some(leader),
            term: 3,
            voters: voters
                .iter()
                .map(|(id, matched)| pb::Voter {
                    id: *id,
                    name: format!("cp-{id}"),
                    address: String::new(),
                    reachable: true,
                    matched: *matched,
                    cert_expires: None,
                    stored: false,
                })
                .collect(),
            last_applied: 10,
            ..Default::default()
        }
    }

    fn pristine() -> pb::StatusResponse {
        pb::StatusResponse::default()
    }

    #[test]
    fn nobody_answers_means_waiting_not_a_cluster_of_one() {
        assert_eq!(
            decide(3, &[None, None]),
            Start::Wait {
                answered: 1,
                voters: 3
            }
        );
        assert_eq!(
            decide(5, &[Some(pristine()), None, None, None]),
            Start::Wait {
                answered: 2,
                voters: 5
            }
        );
    }

    #[test]
    fn a_lone_configured_voter_forms_its_cluster() {
        assert_eq!(decide(1, &[]), Start::FormCluster);
    }

    #[test]
    fn a_majority_of_fresh_voters_forms_a_new_cluster() {
        let mut s = status(1, &[(1, Some(1))]);
        s.leader = None;
        assert_eq!(decide(3, &[Some(s), None]), Start::FormCluster);
        assert_eq!(
            decide(5, &[Some(pristine()), Some(pristine()), None, None]),
            Start::FormCluster
        );
    }

    #[test]
    fn a_member_that_never_stored_anything_catches_up() {
        let s = status(1, &[(1, Some(10)), (2, Some(10)), (3, None)]);
        assert_eq!(decide(3, &[Some(s), None]), Start::CatchUp { leader: 1 });
    }

    #[test]
    fn a_member_with_history_but_no_state_is_refused() {
        let s = status(1, &[(1, Some(10)), (2, Some(10)), (3, Some(8))]);
        assert_eq!(
            decide(3, &[None, Some(s)]),
            Start::Refuse {
                leader: 1,
                matched: Some(8)
            }
        );
    }

    #[test]
    fn a_member_the_cluster_recorded_is_refused_by_a_leader_that_knows_no_match() {
        // The leader restarted: it has no matched index for voter 3 yet, but
        // the replicated record says voter 3 stored entries.
        let mut s = status(1, &[(1, Some(10)), (2, Some(10)), (3, None)]);
        s.voters[2].stored = true;
        assert_eq!(
            decide(3, &[Some(s), None]),
            Start::Refuse {
                leader: 1,
                matched: None
            }
        );
    }

    #[test]
    fn a_voter_not_in_the_membership_waits_to_be_added() {
        let s = status(1, &[(1, Some(10)), (2, Some(10)), (3, Some(10))]);
        assert_eq!(decide(4, &[Some(s)]), Start::AwaitAdd { leader: 1 });
    }
}
