//! The host agent and its adapters: updates, lease client, drain, hooks, reboot, systemd.

pub mod agent;
pub mod blockers;
pub mod dbus;
pub mod fleet_report;
pub mod held_lease;
pub mod hooks;
pub mod kubernetes;
pub mod lease_client;
mod lease_wait;
pub mod metrics;
pub mod notify;
pub mod phase_file;
pub mod process;
pub mod reboot;
mod roll;
pub mod service_manager;
pub mod updates;
