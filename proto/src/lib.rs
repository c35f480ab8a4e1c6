//! baton's gRPC protocol: generated Raft, Lease and Admin services and messages.

#![allow(clippy::all, missing_docs)]

pub mod codec;

/// Version 1 of the protocol (`package baton.v1`).
pub mod v1 {
    tonic::include_proto!("baton.v1");
}
