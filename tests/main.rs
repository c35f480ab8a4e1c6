//! baton's integration tests as one binary: real agents, the CLI, real D-Bus, openraft's suite.
//!
//! Run with `cargo test --workspace` (all of them) or
//! `cargo test --test integration cluster::` (one module).

mod support;

mod blockers;
mod chaos;
mod cluster;
mod config_errors;
mod control;
mod dbus;
mod demo;
mod flatcar_host;
mod fleet_view;
mod fleetlock;
mod host_agent;
mod http_client;
mod kubernetes_host;
mod layers;
mod metrics;
mod notify;
mod queue;
mod security;
mod storage;
mod supervision;
