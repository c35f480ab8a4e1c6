//! The public Admin service: pause, resume, unlock, set-max and voters, each a log entry.

use std::collections::BTreeSet;
use std::future::Future;

use baton_proto::v1 as pb;
use baton_proto::v1::admin_client::AdminClient;
use baton_proto::v1::admin_server::Admin;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::raft::types::{ClientWriteResponse, VoterNode};
use crate::rules::access::Caller;
use crate::rules::lease::{Command, Outcome, UnixMillis};
use crate::server::auth;
use crate::server::requests;
use crate::server::routing::{write_failed, Answered, Attempt, Cluster, Routed};

/// How a membership change can fail.
type MembershipError = RaftError<u64, ClientWriteError<u64, VoterNode>>;

/// gRPC `Admin` service of a voter.
pub struct AdminService {
    cluster: Cluster,
}

impl AdminService {
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    /// Proposes the command `make(request, now)` on the leader (or forwards
    /// the request there with `remote`) and reports what changed.
    async fn lease_admin<Req, RF>(
        &self,
        request: Request<Req>,
        make: impl Fn(&Req, &str, UnixMillis) -> Command,
        remote: impl Fn(AdminClient<Channel>, Request<Req>) -> RF,
    ) -> Result<Response<pb::AdminResponse>, Status>
    where
        Req: Clone,
        RF: Future<Output = Result<Response<pb::AdminResponse>, Status>>,
    {
        propose_admin(&self.cluster, request, make, |channel, forwarded| {
            remote(AdminClient::new(channel), forwarded)
        })
        .await
    }

    /// Runs a membership change on the leader (or forwards it there).
    async fn membership_admin<Req, CF, RF>(
        &self,
        request: Request<Req>,
        change: impl Fn(Cluster, Req) -> CF,
        describe: impl Fn(&Req) -> String,
        remote: impl Fn(AdminClient<Channel>, Request<Req>) -> RF,
    ) -> Result<Response<pb::AdminResponse>, Status>
    where
        Req: Clone,
        CF: Future<Output = Result<ClientWriteResponse, MembershipError>>,
        RF: Future<Output = Result<Response<pb::AdminResponse>, Status>>,
    {
        let request = Routed::new(request)?;
        let cluster = &self.cluster;
        let req = &request.message;
        let answer = cluster
            .route(
                &request,
                || async {
                    match change(cluster.clone(), req.clone()).await {
                        Ok(written) => Attempt::Done(pb::AdminResponse {
                            message: describe(req),
                            index: written.log_id.index,
                        }),
                        Err(e) => write_failed(e),
                    }
                },
                |channel, forwarded| remote(AdminClient::new(channel), forwarded),
            )
            .await?;
        Ok(Response::new(answered(&request.caller, answer)))
    }
}

/// Proposes the command `make(request, caller, now)` on the leader (or
/// forwards the request there with `remote`) and reports what changed: the
/// Admin and Control services' admin calls.
pub(super) async fn propose_admin<Req, RF>(
    cluster: &Cluster,
    request: Request<Req>,
    make: impl Fn(&Req, &str, UnixMillis) -> Command,
    remote: impl Fn(Channel, Request<Req>) -> RF,
) -> Result<Response<pb::AdminResponse>, Status>
where
    Req: Clone,
    RF: Future<Output = Result<Response<pb::AdminResponse>, Status>>,
{
    let request = Routed::new(request)?;
    let by = request.caller.name();
    let answer = cluster
        .route(
            &request,
            || async {
                let make = |now| make(&request.message, by, now);
                cluster.propose_stamped(make).await.map(|outcome| {
                    let message = match outcome {
                        Outcome::Done { message } => message,
                        other => format!("{other:?}"),
                    };
                    pb::AdminResponse { message, index: 0 }
                })
            },
            remote,
        )
        .await?;
    Ok(Response::new(answered(&request.caller, answer)))
}

/// The admin response, wherever it was made; logged, with its caller,
/// where it was made (the leader).
fn answered(
    caller: &Caller,
    answer: Answered<pb::AdminResponse, pb::AdminResponse>,
) -> pb::AdminResponse {
    match answer {
        Answered::Here(response) => {
            auth::audit(caller, &response.message);
            response
        }
        Answered::ByLeader(response) => response,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn pause(
        &self,
        request: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        requests::check_pause(request.get_ref())?;
        let default_max_holders = self.cluster.lease.default_max_holders;
        self.lease_admin(
            request,
            |req, by, now| requests::pause_command(req, by, now, default_max_holders),
            |mut client, req| async move { client.pause(req).await },
        )
        .await
    }

    async fn resume(
        &self,
        request: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        requests::check_resume(request.get_ref())?;
        self.lease_admin(
            request,
            requests::resume_command,
            |mut client, req| async move { client.resume(req).await },
        )
        .await
    }

    async fn force_release(
        &self,
        request: Request<pb::ForceReleaseRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        requests::check_force_release(request.get_ref())?;
        self.lease_admin(
            request,
            requests::force_release_command,
            |mut client, req| async move { client.force_release(req).await },
        )
        .await
    }

    async fn set_max(
        &self,
        request: Request<pb::SetMaxRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        requests::check_set_max(request.get_ref())?;
        let default_max_holders = self.cluster.lease.default_max_holders;
        self.lease_admin(
            request,
            |req, by, now| requests::set_max_command(req, by, now, default_max_holders),
            |mut client, req| async move { client.set_max(req).await },
        )
        .await
    }

    async fn add_voter(
        &self,
        request: Request<pb::AddVoterRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let req = request.get_ref();
        requests::check_add_voter(req)?;
        let membership = self
            .cluster
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        if membership.membership().get_node(&req.id).is_some() {
            return Err(Status::already_exists(format!(
                "voter id {} is taken; never reuse an id, pick a new one",
                req.id
            )));
        }
        self.membership_admin(
            request,
            |cluster, req| async move {
                let node = VoterNode {
                    name: req.name.clone(),
                    address: req.address.clone(),
                };
                // Catch the new voter up as a learner first, so adding it
                // does not stall commits while it copies the log.
                cluster.raft.add_learner(req.id, node, true).await?;
                cluster
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.id])), false)
                    .await
            },
            |req| format!("voter {} ({} at {}) added", req.id, req.name, req.address),
            |mut client, req| async move { client.add_voter(req).await },
        )
        .await
    }

    async fn remove_voter(
        &self,
        request: Request<pb::RemoveVoterRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        self.membership_admin(
            request,
            |cluster, req| async move {
                cluster
                    .raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([req.id])), false)
                    .await
            },
            |req| format!("voter {} removed", req.id),
            |mut client, req| async move { client.remove_voter(req).await },
        )
        .await
    }
}
