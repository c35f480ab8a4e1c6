//! baton's integration tests, as one test binary: real `baton agent` processes, the CLI, real D-Bus, openraft's storage suite.
//!
//! Run with `cargo test --workspace` (all of them) or
//! `cargo test --test integration cluster::` (one module).

mod support;

mod cluster;
mod config_errors;
mod dbus;
mod demo;
mod flatcar_host;
mod host_agent;
mod layers;
mod storage;
