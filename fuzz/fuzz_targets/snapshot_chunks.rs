//! Snapshot chunks as a voter receives them: each `InstallSnapshot`
//! payload decoded (`types::from_payload`), checked by
//! `raft::service::check_chunk`, then taken or ignored as openraft 0.9
//! does (a chunk whose vote is older than the receiver's is answered with
//! the receiver's vote and not written; otherwise it is written where
//! `Streaming::receive` writes it: a new snapshot id must start at offset
//! 0; seek to the offset, write), and counted as arrived only when
//! `raft::service::taken` says so, as `RaftService` does; the last chunk's
//! buffer is decoded as the state machine's `install_snapshot` decodes it.
//!
//! No panic. The chunk check keeps its promise: a chunk it lets through
//! never starts past the end of what openraft holds (no zero-filled gap),
//! and the buffer never grows past the snapshot limit. What decodes
//! round-trips.
#![no_main]

use std::cmp::Ordering;
use std::io::{Cursor, Write};

use baton::fuzzing::{check_chunk, decode, from_payload, taken, AppliedState, MAX_SNAPSHOT_BYTES};
use baton_fuzz::raft::{InstallSnapshotRequest, Vote};
use baton_fuzz::{assert_round_trip, Chunks};
use libfuzzer_sys::fuzz_target;
use openraft::raft::InstallSnapshotResponse;
use prost::Message;

const MAX_CHUNKS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(chunks) = Chunks::decode(data) else {
        return;
    };
    // RaftService's bookkeeping, and openraft's snapshot being streamed in.
    let mut receiving = None;
    let mut streaming: Option<(String, Cursor<Vec<u8>>)> = None;
    let mut receiver_vote = Vote::default();
    for payload in chunks.payloads.iter().take(MAX_CHUNKS) {
        let Ok(request) = from_payload::<InstallSnapshotRequest>(payload) else {
            continue;
        };
        assert_round_trip(&request);
        let Ok(arrived) = check_chunk(&receiving, &request) else {
            continue;
        };
        // openraft: a vote not at least the receiver's is answered with its own, unwritten.
        if matches!(
            request.vote.partial_cmp(&receiver_vote),
            None | Some(Ordering::Less)
        ) {
            let answer = Ok(InstallSnapshotResponse {
                vote: receiver_vote,
            });
            assert!(!taken(&request.vote, &answer));
            continue;
        }
        receiver_vote = request.vote;
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
        let answer = Ok(InstallSnapshotResponse {
            vote: receiver_vote,
        });
        assert!(taken(&request.vote, &answer));
        receiving = Some(arrived);
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
