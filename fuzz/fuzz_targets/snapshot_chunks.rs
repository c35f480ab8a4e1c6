//! Snapshot chunks as a voter receives them: each `InstallSnapshot`
//! payload decoded (`types::from_payload`), checked by
//! `raft::service::check_chunk`, then written where openraft 0.9's
//! `Streaming::receive` writes it (a new snapshot id must start at offset
//! 0; seek to the offset, write); the last chunk's buffer is decoded as the
//! state machine's `install_snapshot` decodes it.
//!
//! No panic. The chunk check keeps its promise: a chunk it lets through
//! never starts past the end of what openraft holds (no zero-filled gap),
//! and the buffer never grows past the snapshot limit. What decodes
//! round-trips.
//!
//! Not modelled: openraft ignoring a chunk whose vote is older than the
//! receiver's (`Raft::install_snapshot` answers without writing it).
//! `check_chunk` has counted that chunk by then, so a later chunk of the
//! same snapshot id may start past what openraft holds and leave a
//! zero-filled gap. Only a voter can send chunks (mutual TLS, raft role),
//! and a leader sends a snapshot's chunks in order, so this takes a
//! misbehaving voter; counting a chunk only once openraft took it would close it.
#![no_main]

use std::io::{Cursor, Write};

use baton::fuzzing::{check_chunk, decode, from_payload, AppliedState, MAX_SNAPSHOT_BYTES};
use baton_fuzz::raft::InstallSnapshotRequest;
use baton_fuzz::{assert_round_trip, Chunks};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const MAX_CHUNKS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(chunks) = Chunks::decode(data) else {
        return;
    };
    // RaftService's bookkeeping, and openraft's snapshot being streamed in.
    let mut receiving = None;
    let mut streaming: Option<(String, Cursor<Vec<u8>>)> = None;
    for payload in chunks.payloads.iter().take(MAX_CHUNKS) {
        let Ok(request) = from_payload::<InstallSnapshotRequest>(payload) else {
            continue;
        };
        assert_round_trip(&request);
        if check_chunk(&mut receiving, &request).is_err() {
            continue;
        }
        let id = &request.meta.snapshot_id;
        if streaming.as_ref().map(|(current, _)| current) != Some(id) {
            if request.offset != 0 {
                continue; // openraft: SnapshotMismatch
            }
            streaming = Some((id.clone(), Cursor::new(Vec::new())));
        }
        let Some((_, buffer)) = streaming.as_mut() else {
            continue;
        };
        let held = buffer.get_ref().len() as u64;
        assert!(
            request.offset <= held,
            "chunk at {} let through with {held} bytes held: a zero-filled gap",
            request.offset
        );
        buffer.set_position(request.offset);
        buffer.write_all(&request.data).expect("write to memory");
        assert!(buffer.get_ref().len() as u64 <= MAX_SNAPSHOT_BYTES);
        if request.done {
            if let Some((_, buffer)) = streaming.take() {
                if let Ok(state) = decode::<AppliedState>(buffer.get_ref()) {
                    assert_round_trip(&state);
                }
            }
        }
    }
});
