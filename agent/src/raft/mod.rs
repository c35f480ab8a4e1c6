//! openraft for baton: types, redb storage, the state machine, the network and the RPC service.

pub mod codec;
pub mod election;
pub mod log_store;
pub mod log_writer;
pub mod network;
pub mod service;
pub mod sim_store;
pub mod state_machine;
pub mod storage;
pub mod types;
