//! The public Control service: hold, unhold and reboot-now per host, and one host's orders.

use baton_proto::v1 as pb;
use baton_proto::v1::control_client::ControlClient;
use baton_proto::v1::control_server::Control;
use tonic::{Request, Response, Status};

use crate::rules::lease::LeaseState;
use crate::server::admin_service::propose_admin;
use crate::server::requests;
use crate::server::routing::Cluster;
use crate::server::wire::{self, hold_entry, reboot_entry};

/// gRPC `Control` service of a voter.
pub struct ControlService {
    cluster: Cluster,
}

impl ControlService {
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn hold(
        &self,
        request: Request<pb::HoldRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        requests::check_hold(request.get_ref())?;
        propose_admin(
            &self.cluster,
            request,
            requests::hold_command,
            |channel, req| async move { ControlClient::new(channel).hold(req).await },
        )
        .await
    }

    async fn unhold(
        &self,
        request: Request<pb::UnholdRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        requests::check_host(&request.get_ref().holder)?;
        propose_admin(
            &self.cluster,
            request,
            requests::unhold_command,
            |channel, req| async move { ControlClient::new(channel).unhold(req).await },
        )
        .await
    }

    async fn reboot_now(
        &self,
        request: Request<pb::RebootNowRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        requests::check_host(&request.get_ref().holder)?;
        propose_admin(
            &self.cluster,
            request,
            requests::reboot_now_command,
            |channel, req| async move { ControlClient::new(channel).reboot_now(req).await },
        )
        .await
    }

    /// Read from this voter's applied state: a host agent asks once per
    /// poll, and a hold or a reboot request reaches it a heartbeat later.
    async fn host_control(
        &self,
        request: Request<pb::HostControlRequest>,
    ) -> Result<Response<pb::HostControlResponse>, Status> {
        let holder = &request.get_ref().holder;
        requests::check_host(holder)?;
        let state = self.cluster.view.read();
        Ok(Response::new(host_control(&state.lease, holder)))
    }
}

/// `holder`'s orders in `lease`: its hold and its reboot-now request, if
/// any, and the grants it has.
pub fn host_control(lease: &LeaseState, holder: &str) -> pb::HostControlResponse {
    pb::HostControlResponse {
        held: lease.held.get(holder).map(|hold| hold_entry(holder, hold)),
        reboot_now: lease
            .reboot_now
            .get(holder)
            .map(|request| reboot_entry(holder, request)),
        grants: lease
            .groups
            .values()
            .filter_map(|group| group.grant(holder))
            .map(wire::grant)
            .collect(),
    }
}
