//! The pure rules: lease, host agent phases, windows, names, durations. No I/O, no clock.
//!
//! Everything above (config, raft, services, host agent, CLI) calls these;
//! nothing here imports from above.

pub mod access;
pub mod alerts;
pub mod durations;
pub mod fleet;
pub mod lease;
pub mod limits;
pub mod names;
pub mod networks;
pub mod node_labels;
pub mod notify;
pub mod phases;
pub mod urls;
pub mod window;
