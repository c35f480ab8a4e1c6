//! baton: coordinated, lease-guarded OS update reboots. See ARCHITECTURE.md for the map.
//!
//! Layers, bottom to top (imports only go downwards):
//! - rules: `lease` (the lease state machine), `config` (settings types);
//! - raft adapters: `raft_types`, `log_store`, `state_machine`, `transport`, `raft_network`;
//! - services: `cluster`, `wire`, `bootstrap`, `raft_service`, `lease_service`, `admin_service`, `node`;
//! - command line: `client`, `output`, `logging`, `cli`.

// openraft's StorageError (224 bytes) is the error type of its storage
// traits; our storage code returns it as is rather than boxing it at every
// edge. Errors are rare and off the hot path.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod host_state;
pub mod lease;
pub mod window;

pub mod held_lease;
pub mod hooks;
pub mod kubernetes;
pub mod lease_client;
pub mod log_store;
pub mod raft_network;
pub mod raft_types;
pub mod reboot;
pub mod state_file;
pub mod state_machine;
pub mod transport;
pub mod updates;

pub mod admin_service;
pub mod bootstrap;
pub mod cluster;
pub mod lease_service;
pub mod node;
pub mod raft_service;
pub mod wire;

pub mod cli;
pub mod client;
pub mod demo;
pub mod host_agent;
pub mod logging;
pub mod output;
pub mod service_manager;
