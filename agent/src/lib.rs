//! baton: coordinated, lease-guarded OS update reboots. See ARCHITECTURE.md for the map.
//!
//! Layers, bottom to top (imports only go downwards):
//! - `rules`: the pure rules (lease state machine, host agent phases, windows, names, limits);
//!   `locks`: std's locks, taken also after a panic poisoned them; `clock`: time as baton reads it;
//! - `config`: fragments -> merged inputs -> validated settings, using the rules' parsers;
//! - `transport`: the one place that dials voters and listens; `log_fields`: the BATON_* fields;
//! - `raft`: openraft's types, redb storage, state machine, network and RPC service;
//! - `server`: a voter: start-up, bootstrap, leader routing, the Lease and Admin services;
//! - `host`: the host agent and its adapters (updates, drain, hooks, reboot, systemd);
//! - `cli`: the command line, the demo, logging.

// openraft's StorageError (224 bytes) is the error type of its storage
// traits; our storage code returns it as is rather than boxing it at every
// edge. Errors are rare and off the hot path.
#![allow(clippy::result_large_err)]

mod clock;
mod locks;
mod rules;

mod config;

mod log_fields;
mod transport;

mod raft;

mod server;

mod host;

mod cli;

// What the binary (main.rs) and the man-page generator (examples/gen_docs.rs) need.
pub use cli::logging::{error_chain, init as init_logging, report_error};
pub use cli::{run, Cli, CliError, EXIT_CONFIG, EXIT_NOPERM, EXIT_QUEUED, EXIT_UNAVAILABLE};

// The local fleet launcher: `baton demo`, examples/lease_bench.rs and the integration tests.
pub use cli::local_fleet::{
    free_port, ClientIdentity, FleetError, FleetLayout, FleetVoter, HostConfig, LocalHost,
};
pub use rules::access::Role;

// Channels to a fleet as a client presents itself (tests, the benchmark).
pub use config::TlsFiles;
pub use transport::tls::{TlsError, TlsMode, TlsState};
pub use transport::Dialer;

// Update sources, for the integration tests against a real D-Bus.
pub use config::{UpdateSettings, UpdateSourceKind};
pub use host::process::ProcessError;
pub use host::updates::{automatic_reboot_warning, PendingUpdate, UpdateError, UpdateSource};

// Raft storage, for openraft's own conformance suite.
pub use raft::log_store::LogStore;
pub use raft::state_machine::StateMachine;
pub use raft::storage::open_database;
pub use raft::types::{StorageError, TypeConfig};

/// What the fuzz targets in `fuzz/` call, and only that: the code that reads
/// bytes from outside (config files, Lease, Admin and Control requests,
/// FleetLock requests, Fleet reports, raft records and RPCs, snapshot
/// chunks, `agent.json`). The modules stay private; this names the entry
/// points the targets drive, so a target tests what the daemon runs rather
/// than a copy of it. Not an API: hidden from the docs.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::config::{ConfigError, Settings};
    pub use crate::host::phase_file::{PhaseFile, PhaseFileError};
    pub use crate::raft::codec::{decode, encode, CodecError};
    pub use crate::raft::election::{PreVoteRequest, PreVoteResponse};
    pub use crate::raft::service::{check_chunk, taken};
    pub use crate::raft::state_machine::AppliedState;
    pub use crate::raft::types::{from_payload, Applied, NodeId, TypeConfig, VoterNode};
    pub use crate::rules::access::{Caller, HttpCaller, HttpEndpoint, Identity, Role};
    pub use crate::rules::lease::{
        Command, LeaseError, LeaseState, Outcome, QueueReason, RecentReleases, WaiterRef,
        MAX_HOLDERS_CAP, MAX_HOST_CONTROLS,
    };
    pub use crate::rules::limits::MAX_SNAPSHOT_BYTES;
    pub use crate::rules::phases::{resume, Phase, PHASE_NAMES};
    pub use crate::rules::{limits, names};
    pub use crate::server::control_service::host_control;
    pub use crate::server::fleet_state::FleetView;
    pub use crate::server::fleet_view::{batches, check_forward, check_report_call};
    pub use crate::server::lease_service::{acquire_response, release_response};
    pub use crate::server::routing::applied;
    pub use crate::server::{fleetlock, requests, wire};
    pub use tonic::{Code, Status};
    /// The HTTP types a FleetLock request and answer are made of (hyper's).
    pub mod http {
        pub use hyper::body::Bytes;
        pub use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE};
        pub use hyper::{Method, Request, Response, StatusCode};
    }
}

/// What the deterministic simulation (`examples/simulate.rs`) drives, and
/// only that: the real voter (raft, state machine, gRPC services, auth
/// layer) started on a simulated disk and network, and the real host-agent
/// lease client. Not an API: hidden from the docs.
#[doc(hidden)]
pub mod simulation {
    pub use crate::clock::run_wall_clock_on;
    pub use crate::config::Settings;
    pub use crate::host::held_lease::HeldLease;
    pub use crate::host::lease_client::{lease_dialer, Acquired, HostLeaseClient, HostLeaseError};
    pub use crate::raft::sim_store::{SimDisk, SimLogStore};
    pub use crate::raft::state_machine::StateMachine;
    pub use crate::raft::storage::open_in_memory;
    pub use crate::rules::phases::RememberedLease;
    pub use crate::server::voter::{NodeError, Parts, Voter};
    pub use crate::transport::{BoxedIo, Dialer, Incoming, Links, Network};
}
