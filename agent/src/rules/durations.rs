//! Durations as operators write them (`30s`, `1h30m`): the one parser, for config and CLI.

use std::time::Duration;

/// Why a duration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all (or out of range).
    #[error("invalid duration {text:?} (e.g. \"30s\", \"5m\", \"1h30m\"): {reason}")]
    Invalid {
        /// What was written.
        text: String,
        /// The parser's reason.
        reason: String,
    },
    /// Zero or negative: every duration baton reads is a timeout, an
    /// interval or a length, and none of them means anything at zero.
    #[error("duration {text:?} must be greater than zero")]
    NotPositive {
        /// What was written.
        text: String,
    },
}

/// Parses a jiff "friendly" duration that must be greater than zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = |reason: String| DurationError::Invalid {
        text: text.to_owned(),
        reason,
    };
    let signed = text
        .parse::<jiff::SignedDuration>()
        .map_err(|e| invalid(e.to_string()))?;
    if signed <= jiff::SignedDuration::ZERO {
        return Err(DurationError::NotPositive {
            text: text.to_owned(),
        });
    }
    Duration::try_from(signed).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_durations_parse() {
        for (text, want) in [
            ("30s", Duration::from_secs(30)),
            ("500ms", Duration::from_millis(500)),
            ("1h30m", Duration::from_secs(5400)),
            ("2h", Duration::from_secs(7200)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn zero_negative_and_garbage_are_refused() {
        for text in ["0s", "0ms", "-5s"] {
            let error = parse_duration(text).expect_err(text);
            assert!(matches!(error, DurationError::NotPositive { .. }), "{text}");
            assert!(error.to_string().contains("greater than zero"), "{error}");
        }
        for text in ["soon", "1d", "", "5"] {
            let error = parse_duration(text).expect_err(text);
            assert!(error.to_string().contains("invalid duration"), "{error}");
        }
    }
}
