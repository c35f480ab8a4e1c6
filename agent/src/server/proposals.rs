//! The leader's group commit: commands proposed together share one raft entry.
//!
//! openraft 0.9 makes every client write its own log entry, and on the
//! leader it waits for that entry's fsync before it replicates it or takes
//! the next write (`RaftCore::append_to_log` awaits the flush). With 16
//! clients the leader made one fsync per command, and the disk, not the CPU,
//! set the pace. Here at most [`IN_FLIGHT`] grouped raft writes are under
//! way at once; commands proposed meanwhile wait in order and then go as one
//! `Command::Batch` (up to [`MAX_BATCH`]): one entry, one fsync per voter.
//! A command proposed while nothing waits goes at once, alone, so a lone
//! client sees no difference. The batch applies each command as its own
//! entry would (`LeaseState::apply`), so the answers are the same.
//!
//! Commands are grouped only once every other voter has said, in its last
//! raft answer, that it reads batch entries (`raft::types::READS_BATCHES`):
//! during a rolling upgrade an older voter, which cannot decode one, never
//! stalls on a batch; until then each command goes to raft at once, alone.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::raft::network::PeerHealth;
use crate::raft::types::{Applied, NodeId, Raft, VoterNode};
use crate::rules::lease::{Command, LeaseError, Outcome, MAX_BATCH};

/// Raft writes under way at once. Two: a batch forms behind the one the
/// leader is writing, and the next can be handed to raft as soon as that
/// one is on the leader's disk and on its way to the followers.
pub const IN_FLIGHT: usize = 2;

/// Commands waiting for a raft write, at most; a caller beyond waits to queue.
const QUEUED: usize = 4 * MAX_BATCH;

/// Why a proposal was not applied: raft's own error for the write.
pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, VoterNode>>;

/// One command waiting to be written, and who waits for its result.
struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Applied, WriteError>>,
}

/// The handle to this voter's proposer task.
#[derive(Clone)]
pub struct Proposals {
    queue: mpsc::Sender<Pending>,
}

/// Why a proposal got no answer: the proposer task has ended (raft stopped).
#[derive(Debug, thiserror::Error)]
#[error("the proposer has stopped")]
pub struct ProposerGone;

impl Proposals {
    /// Starts the proposer task for `raft`; it ends when every handle is gone.
    pub fn start(raft: Raft, health: PeerHealth) -> Proposals {
        let (queue, pending) = mpsc::channel(QUEUED);
        tokio::spawn(run(raft, health, pending));
        Proposals { queue }
    }

    /// Proposes `command` (already validated; not a batch) and waits until
    /// it is applied; returns what applying it came to.
    pub async fn propose(
        &self,
        command: Command,
    ) -> Result<Result<Applied, WriteError>, ProposerGone> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { command, reply })
            .await
            .map_err(|_| ProposerGone)?;
        answer.await.map_err(|_| ProposerGone)
    }
}

/// Takes what waits, at most `MAX_BATCH` (a `RecordVoter` only alone), as
/// soon as a write slot is free, and writes it as one entry.
async fn run(raft: Raft, health: PeerHealth, mut pending: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held_back: Option<Pending> = None;
    loop {
        let first = match held_back.take() {
            Some(first) => first,
            None => match pending.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        if alone(&first.command) || !peers_read_batches(&raft, &health) {
            // Nothing to group it with, or a peer could not read a batch:
            // straight to raft, as many at once as callers send (openraft
            // queues them; holding them here would only slow them down).
            let raft = raft.clone();
            tokio::spawn(async move { write(&raft, vec![first]).await });
            continue;
        }
        // Never closed: the semaphore lives as long as this loop.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) if alone(&next.command) => {
                    held_back = Some(next);
                    break;
                }
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            write(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Whether every other member (voters and learners, which get the entries
/// too) said in its last answer that it reads batch entries.
fn peers_read_batches(raft: &Raft, health: &PeerHealth) -> bool {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let own = metrics.id;
    let peers = metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| *id != own);
    health.all_read_batches(peers)
}

/// A command that goes in an entry of its own.
fn alone(command: &Command) -> bool {
    matches!(command, Command::RecordVoter { .. } | Command::Batch { .. })
}

/// Writes `batch` as one entry and answers each of its callers.
async fn write(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let Pending { command, reply } = batch.remove(0);
        let wake_followers = command.may_free_slot();
        let result = raft.client_write(command).await;
        if wake_followers && result.is_ok() {
            tell_followers(raft).await;
        }
        let _ = reply.send(result.map(|response| response.data));
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.command, pending.reply))
        .unzip();
    let batch = Command::Batch { commands };
    let wake_followers = batch.may_free_slot();
    let count = replies.len();
    match raft.client_write(batch).await {
        Ok(response) => {
            if wake_followers {
                tell_followers(raft).await;
            }
            let results = match response.data {
                Ok(Outcome::Batch(outcomes)) if outcomes.len() == count => {
                    outcomes.into_iter().map(Ok).collect()
                }
                // Validated before it was proposed, so this cannot happen; if
                // it did, each caller learns why rather than a wrong answer.
                Ok(other) => vec![
                    Err(LeaseError::Batch(format!(
                        "applied to {other:?}, not to one outcome per command"
                    )));
                    count
                ],
                Err(rejected) => vec![Err(rejected); count],
            };
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// A heartbeat carries the new commit index: followers apply now and wake
/// their watchers and waiters, instead of at the next heartbeat tick.
async fn tell_followers(raft: &Raft) {
    let _ = raft.trigger().heartbeat().await;
}
