//! baton: coordinated, lease-guarded OS update reboots. See ARCHITECTURE.md for the map.
//!
//! Layers, bottom to top (imports only go downwards):
//! - `rules`: the pure rules (lease state machine, host agent phases, windows, names, limits);
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

pub mod rules;

pub mod config;

pub mod log_fields;
pub mod transport;

pub mod raft;

pub mod server;

pub mod host;

pub mod cli;
