//! A voter: start-up and bootstrap, leader routing, and the Lease and Admin gRPC services.

pub mod admin_service;
pub mod auth;
pub mod bootstrap;
pub mod call_latency;
pub mod control_service;
pub mod fleet_state;
pub mod fleet_view;
pub mod fleetlock;
pub mod lease_service;
pub mod metrics;
pub mod proposals;
pub mod requests;
pub mod routing;
pub mod session_loops;
pub mod sessions;
pub mod voter;
pub mod wait_stream;
pub mod wire;
