//! The one encoding of raft records and messages: postcard behind a format byte; JSON still read.
//!
//! Log entries, votes, markers, snapshots and the raft RPCs between voters
//! all go through here. Records written before this encoding are JSON and
//! stay readable: JSON never starts with the format byte.
//!
//! postcard is positional: fields and enum variants are identified by their
//! order, not their names. New variants go at the end; any other change of
//! a stored type's shape needs a new format byte (and reading the old one).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// First byte of a postcard record (format 1).
const POSTCARD_V1: u8 = 0x01;

/// A record or message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode: {0}")]
    Encode(postcard::Error),
    #[error("corrupt record: {0}")]
    Binary(postcard::Error),
    #[error("corrupt record (JSON): {0}")]
    Json(serde_json::Error),
    #[error("empty record")]
    Empty,
}

/// `value` as stored and sent: the format byte, then postcard.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_extend(value, vec![POSTCARD_V1]).map_err(CodecError::Encode)
}

/// The value in `bytes`: postcard after the format byte, or JSON (older records).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        Some((&POSTCARD_V1, rest)) => postcard::from_bytes(rest).map_err(CodecError::Binary),
        Some(_) => serde_json::from_slice(bytes).map_err(CodecError::Json),
        None => Err(CodecError::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lease::{Command, LeaseState, WaiterRef};

    /// A log entry's shape: its log id and its command.
    type Record = (openraft::LogId<u64>, Command);

    fn record(index: u64, command: Command) -> Record {
        (
            openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), index),
            command,
        )
    }

    #[test]
    fn records_round_trip_and_are_smaller_than_json() {
        let acquire = record(
            7,
            Command::Acquire {
                group: "workers".into(),
                holder: "node-17.example.com".into(),
                machine_id: "4f1c1d2e3b4a59687766554433221100".into(),
                now: 1_764_000_000_000,
                default_max_holders: 1,
            },
        );
        let bytes = encode(&acquire).expect("encode");
        assert_eq!(bytes[0], POSTCARD_V1);
        assert_eq!(decode::<Record>(&bytes).expect("decode"), acquire);
        let json = serde_json::to_vec(&acquire).expect("json");
        assert!(
            bytes.len() * 2 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn json_records_of_earlier_versions_still_read() {
        let drop = record(
            9,
            Command::DropWaiters {
                waiters: vec![WaiterRef {
                    group: "g".into(),
                    holder: "h".into(),
                }],
                now: 5,
            },
        );
        let json = serde_json::to_vec(&drop).expect("json");
        assert_eq!(decode::<Record>(&json).expect("JSON still decodes"), drop);
        let state: LeaseState =
            decode(br#"{"groups":{},"paused_all":null}"#).expect("an old lease state");
        assert_eq!(state, LeaseState::default());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode::<Record>(&[]), Err(CodecError::Empty)));
        assert!(decode::<Record>(&[POSTCARD_V1, 0xff, 0xff, 0xff]).is_err());
        assert!(decode::<Record>(b"{not json").is_err());
    }

    #[test]
    fn a_batch_round_trips_and_a_nested_one_is_refused_before_it_recurses() {
        let batch = Command::Batch {
            commands: vec![
                Command::Expire {
                    now: 1,
                    hold_timeout_ms: None,
                },
                Command::Expire {
                    now: 2,
                    hold_timeout_ms: Some(5),
                },
            ],
        };
        let bytes = encode(&batch).expect("encode");
        assert_eq!(decode::<Command>(&bytes).expect("decode"), batch);
        let json = serde_json::to_vec(&batch).expect("json");
        assert_eq!(decode::<Command>(&json).expect("JSON decodes"), batch);

        let nested = Command::Batch {
            commands: vec![Command::Batch {
                commands: Vec::new(),
            }],
        };
        let refused = |bytes: &[u8]| match decode::<Command>(bytes) {
            Err(e) => e.to_string(),
            Ok(command) => panic!("decoded {command:?}"),
        };
        // postcard keeps no custom message: an error is what counts there.
        let bytes = encode(&nested).expect("encode");
        refused(&bytes);
        let json = serde_json::to_vec(&nested).expect("json");
        assert!(refused(&json).contains("batch inside a batch"));
        // A million levels, as a peer could send them in one raft message:
        // refused at the second level, not by a stack overflow. An empty
        // batch is [variant, 0]; one holding one command [variant, 1, ..].
        let empty = encode(&Command::Batch {
            commands: Vec::new(),
        })
        .expect("encode");
        let (variant, len) = (empty[1], empty[2]);
        assert_eq!(len, 0);
        let mut deep = vec![POSTCARD_V1];
        for _ in 0..1_000_000 {
            deep.extend([variant, 1]);
        }
        deep.extend([variant, 0]);
        refused(&deep);
        // The next decode on this thread starts outside any batch.
        let again = encode(&batch).expect("encode");
        assert_eq!(decode::<Command>(&again).expect("decode"), batch);
    }
}
