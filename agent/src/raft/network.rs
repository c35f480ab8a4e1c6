//! openraft's network over gRPC: the client side of AppendEntries, Vote and InstallSnapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_proto::v1::raft_client::RaftClient;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock::Instant;
use crate::locks::LockOrRecover;
use crate::raft::types::{from_payload, to_payload, NodeId, TypeConfig, VoterNode, READS_BATCHES};
use crate::transport::Dialer;

/// How long replication to a peer that did not answer waits before it
/// tries again (openraft's default is 500 ms, which a follower back from a
/// partition would wait out before it is caught up).
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);

/// When each peer last answered a raft RPC, and whether that answer said it
/// reads batch entries: the leader's view of who is reachable, and of
/// whether it may group commands (`server::proposals`).
#[derive(Clone, Default)]
pub struct PeerHealth {
    last_ok: Arc<Mutex<HashMap<NodeId, Answer>>>,
}

/// A peer's last answer.
#[derive(Clone, Copy)]
struct Answer {
    at: Instant,
    reads_batches: bool,
}

impl PeerHealth {
    /// Notes an answer of `peer`; `reads_batches`: it carried `READS_BATCHES`.
    fn record_ok(&self, peer: NodeId, reads_batches: bool) {
        let answer = Answer {
            at: Instant::now(),
            reads_batches,
        };
        self.lock().insert(peer, answer);
    }

    /// True when `peer` answered within `within`.
    pub fn answered_within(&self, peer: NodeId, within: Duration) -> bool {
        self.lock()
            .get(&peer)
            .is_some_and(|answer| answer.at.elapsed() <= within)
    }

    /// True when every one of `peers` said, in its last answer, that it
    /// reads batch entries; false while one has not answered yet.
    pub fn all_read_batches(&self, mut peers: impl Iterator<Item = NodeId>) -> bool {
        let answers = self.lock();
        peers.all(|peer| answers.get(&peer).is_some_and(|a| a.reads_batches))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Answer>> {
        self.last_ok.lock_or_recover()
    }
}

/// Makes a [`PeerConnection`] per target for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    dialer: Dialer,
    health: PeerHealth,
}

impl NetworkFactory {
    pub fn new(dialer: Dialer, health: PeerHealth) -> Self {
        Self { dialer, health }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &VoterNode) -> PeerConnection {
        PeerConnection {
            target,
            node: node.clone(),
            dialer: self.dialer.clone(),
            health: self.health.clone(),
        }
    }
}

/// Raft RPCs to one peer, over the dialer's shared channel to it.
pub struct PeerConnection {
    target: NodeId,
    node: VoterNode,
    dialer: Dialer,
    health: PeerHealth,
}

/// Which raft RPC to make.
#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerConnection {
    /// Sends `request`, and decodes the peer's `Result<Resp, RaftError<E>>`.
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, VoterNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = to_payload(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let channel = self
            .dialer
            .channel(&self.node.address)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut client = RaftClient::new(channel);
        let mut request = tonic::Request::new(payload);
        request.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            // Could not connect, or the connection broke (also: its pings
            // went unanswered): openraft backs off from unreachable peers
            // instead of hammering them. A call that merely timed out is
            // retried at once: the peer is busy, not gone.
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let reads_batches = reply.metadata().contains_key(READS_BATCHES);
        self.health.record_ok(self.target, reads_batches);
        let decoded: Result<Resp, RaftError<NodeId, E>> =
            from_payload(reply.get_ref()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|remote| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                remote,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, VoterNode, RaftError<NodeId>>> {
        self.call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, VoterNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, VoterNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_only_once_every_peer_said_it_reads_them() {
        let health = PeerHealth::default();
        assert!(
            !health.all_read_batches([2, 3].into_iter()),
            "no answers yet"
        );
        health.record_ok(2, true);
        assert!(!health.all_read_batches([2, 3].into_iter()), "3 not heard");
        // An older voter answers without the header.
        health.record_ok(3, false);
        assert!(!health.all_read_batches([2, 3].into_iter()));
        health.record_ok(3, true);
        assert!(health.all_read_batches([2, 3].into_iter()));
        // Downgraded again: its next answer takes it back.
        health.record_ok(2, false);
        assert!(!health.all_read_batches([2, 3].into_iter()));
        assert!(health.answered_within(2, Duration::from_secs(60)));
        // A single voter has no peers to wait for.
        assert!(health.all_read_batches(std::iter::empty()));
    }
}
