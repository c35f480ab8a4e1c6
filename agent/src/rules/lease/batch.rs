//! The leader's group commit in the lease rules: `Command::Batch`, its limit, checks and apply.

use serde::Deserialize;

use super::{Command, Event, LeaseError, LeaseState, Outcome};

/// Most commands one `Command::Batch` carries: the leader's group commit
/// takes at most this many concurrent proposals into one raft entry.
pub const MAX_BATCH: usize = 64;

/// Decodes a batch's commands, refusing a batch inside one as soon as it
/// starts: `validate` refuses it too, but decoding it first would recurse
/// as deep as the bytes nest it (two bytes a level in a raft message of up
/// to 8 MiB: far past a thread's stack).
pub(super) fn decode_batch<'de, D>(deserializer: D) -> Result<Vec<Command>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    thread_local! {
        static IN_BATCH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if IN_BATCH.with(|inside| inside.replace(true)) {
        // The outer batch's decoding resets the mark when it returns.
        return Err(serde::de::Error::custom("a batch inside a batch"));
    }
    let commands = Vec::<Command>::deserialize(deserializer);
    IN_BATCH.with(|inside| inside.set(false));
    commands
}

/// A batch holds 1 to `MAX_BATCH` commands, each valid, none a batch or a
/// `RecordVoter` (which the raft state machine keeps, not the lease).
pub(super) fn validate(commands: &[Command]) -> Result<(), LeaseError> {
    if commands.is_empty() || commands.len() > MAX_BATCH {
        return Err(LeaseError::Batch(format!(
            "it must hold 1 to {MAX_BATCH} commands"
        )));
    }
    commands.iter().try_for_each(|command| match command {
        Command::Batch { .. } => Err(LeaseError::Batch("a batch inside a batch".into())),
        Command::RecordVoter { .. } => Err(LeaseError::Batch(
            "RecordVoter is proposed on its own".into(),
        )),
        other => other.validate(),
    })
}

impl LeaseState {
    /// Applies a batch's commands (validated with it) in order at one
    /// `index`, each exactly as `apply` would on its own: a refused one
    /// changes nothing and does not stop the rest. Tokens still strictly
    /// increase (`next_token` goes one past the last token when an index
    /// grants more than once).
    pub(super) fn apply_batch(
        &mut self,
        index: u64,
        commands: &[Command],
    ) -> (Outcome, Vec<Event>) {
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut events = Vec::new();
        for command in commands {
            let (outcome, applied) = self.apply_valid(index, command);
            events.extend(applied);
            outcomes.push(outcome);
        }
        (Outcome::Batch(outcomes), events)
    }
}
