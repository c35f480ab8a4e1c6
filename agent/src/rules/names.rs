//! Names and addresses (groups, holders, voter addresses): their rules and limits, only here.
//!
//! The config loader (for `node.name`, `node.group`, voter names and
//! addresses) and the lease rules (for every request and every applied
//! command) call these same checks, so a name the config accepts is a name
//! the cluster accepts, and the other way round.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Longest lease group name, in characters (all ASCII, so also bytes).
pub const MAX_GROUP_LEN: usize = 128;

/// Longest holder name, in characters: a fully qualified DNS name fits.
pub const MAX_HOLDER_LEN: usize = 253;

/// Longest DNS label (RFC 1123).
const MAX_DNS_LABEL_LEN: usize = 63;

/// Longest machine id: systemd's are 32 hex digits; room for other schemes.
pub const MAX_MACHINE_ID_LEN: usize = 64;

/// Longest pause reason, in characters.
pub const MAX_REASON_LEN: usize = 256;

/// Longest voter address (`host:port`).
pub const MAX_ADDRESS_LEN: usize = MAX_HOLDER_LEN + 8;

/// A name every host answers to, so it names no host: two hosts whose name
/// fell back to it would share one lease.
const AMBIGUOUS_HOLDER: &str = "localhost";

/// Why a group or holder name is refused. The messages read after the name,
/// e.g. `"a b": contains ' '; ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NameError {
    /// The empty name.
    #[error("must not be empty")]
    Empty,
    /// Longer than the limit.
    #[error("{len} characters, at most {max} allowed")]
    TooLong {
        /// Characters in the name.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A group name character outside `[a-zA-Z0-9._-]`.
    #[error("contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed")]
    GroupCharacter {
        /// The first such character.
        bad: char,
    },
    /// A control or whitespace character in a holder name.
    #[error("contains {bad:?}; control characters and whitespace are not allowed")]
    HolderCharacter {
        /// The first such character.
        bad: char,
    },
    /// `localhost`, which names every host.
    #[error("names every host; give each host its own name (node.name)")]
    Ambiguous,
    /// A character outside `[A-Za-z0-9-]` in a machine id.
    #[error("contains {bad:?}; a machine id is letters, digits and '-'")]
    MachineIdCharacter {
        /// The first such character.
        bad: char,
    },
    /// A control character in a free text (a pause reason).
    #[error("contains the control character {bad:?}")]
    ControlCharacter {
        /// The first such character.
        bad: char,
    },
}

/// A lease group name: 1 to [`MAX_GROUP_LEN`] characters of `[a-zA-Z0-9._-]`.
pub fn check_group(name: &str) -> Result<(), NameError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(NameError::GroupCharacter { bad });
    }
    // Only ASCII is left at this point, so bytes are characters.
    check_length(name.len(), MAX_GROUP_LEN)
}

/// A holder name (a host's `node.name`, a voter's name): 1 to
/// [`MAX_HOLDER_LEN`] characters, no control characters, no whitespace.
/// Anything else is allowed (`höst/1@dc` is a fine name), since holders
/// come from host names and operators' own naming schemes.
/// `localhost` (any case) is refused: it names every host.
pub fn check_holder(name: &str) -> Result<(), NameError> {
    if let Some(bad) = name.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(NameError::HolderCharacter { bad });
    }
    if name.eq_ignore_ascii_case(AMBIGUOUS_HOLDER) {
        return Err(NameError::Ambiguous);
    }
    check_length(name.chars().count(), MAX_HOLDER_LEN)
}

/// A machine id (`/etc/machine-id`): up to [`MAX_MACHINE_ID_LEN`] letters,
/// digits and '-'; empty means unknown.
pub fn check_machine_id(id: &str) -> Result<(), NameError> {
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(NameError::MachineIdCharacter { bad });
    }
    match id.len() {
        len if len > MAX_MACHINE_ID_LEN => Err(NameError::TooLong {
            len,
            max: MAX_MACHINE_ID_LEN,
        }),
        _ => Ok(()),
    }
}

/// A pause reason: 1 to [`MAX_REASON_LEN`] characters, no control characters
/// (it is shown in terminals and the journal).
pub fn check_reason(reason: &str) -> Result<(), NameError> {
    if let Some(bad) = reason.chars().find(|c| c.is_control()) {
        return Err(NameError::ControlCharacter { bad });
    }
    if reason.trim().is_empty() {
        return Err(NameError::Empty);
    }
    check_length(reason.chars().count(), MAX_REASON_LEN)
}

fn check_length(len: usize, max: usize) -> Result<(), NameError> {
    match len {
        0 => Err(NameError::Empty),
        len if len > max => Err(NameError::TooLong { len, max }),
        _ => Ok(()),
    }
}

/// A voter address `host:port`: port 1..=65535, host an IPv4 address, a
/// bracketed IPv6 address or a DNS name. Resolution is left to connect time.
/// The error is the reason in words.
pub fn check_host_port(address: &str) -> Result<(), String> {
    if address.len() > MAX_ADDRESS_LEN {
        return Err(format!(
            "{} characters, at most {MAX_ADDRESS_LEN} allowed",
            address.len()
        ));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_owned())?;
    match port.parse::<u16>() {
        Ok(0) => return Err("port must be between 1 and 65535".to_owned()),
        Ok(_) => {}
        Err(_) => return Err(format!("invalid port {port:?}, expected 1 to 65535")),
    }
    if host.is_empty() {
        return Err("host must not be empty".to_owned());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unterminated IPv6 address {host:?}"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|e| format!("invalid IPv6 address {inner:?}: {e}"));
    }
    if host.contains(':') {
        return Err("IPv6 addresses must be written in brackets, e.g. [::1]:7421".to_owned());
    }
    check_host(host)
}

/// A host (no port): an IPv4 or IPv6 address, or a DNS name.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    check_dns_name(host)
}

/// RFC 1123 host name: dot-separated labels of 1..=63 ASCII letters, digits
/// and hyphens, not starting or ending with a hyphen; at most 253 characters.
fn check_dns_name(host: &str) -> Result<(), String> {
    if host.len() > MAX_HOLDER_LEN {
        return Err(format!("host name longer than {MAX_HOLDER_LEN} characters"));
    }
    let mut last = "";
    for label in host.split('.') {
        let valid = (1..=MAX_DNS_LABEL_LEN).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "{host:?} is neither an IP address nor a valid DNS name"
            ));
        }
        last = label;
    }
    // An all-numeric last label means a mistyped IPv4 address, e.g. "10.0.0.256".
    if last.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    Ok(())
}

/// A free text from the network that may be empty (a host report's update
/// reason or version): at most `max` characters, no control characters.
pub fn check_text(text: &str, max: usize) -> Result<(), NameError> {
    if let Some(bad) = text.chars().find(|c| c.is_control()) {
        return Err(NameError::ControlCharacter { bad });
    }
    match text.chars().count() {
        len if len > max => Err(NameError::TooLong { len, max }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        assert_eq!(check_group("A-z_0.9"), Ok(()));
        assert_eq!(check_group(&"g".repeat(MAX_GROUP_LEN)), Ok(()));
        assert_eq!(
            check_group(&"g".repeat(MAX_GROUP_LEN + 1)),
            Err(NameError::TooLong { len: 129, max: 128 })
        );
        assert_eq!(check_group(""), Err(NameError::Empty));
        for (bad, c) in [("a b", ' '), ("a/b", '/'), ("grüppe", 'ü'), ("x\n", '\n')] {
            assert_eq!(
                check_group(bad),
                Err(NameError::GroupCharacter { bad: c }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn holder_names() {
        assert_eq!(check_holder("höst/1@dc"), Ok(()));
        assert_eq!(check_holder(&"x".repeat(MAX_HOLDER_LEN)), Ok(()));
        // Characters, not bytes.
        assert_eq!(check_holder(&"ö".repeat(MAX_HOLDER_LEN)), Ok(()));
        assert_eq!(
            check_holder(&"x".repeat(MAX_HOLDER_LEN + 1)),
            Err(NameError::TooLong { len: 254, max: 253 })
        );
        assert_eq!(check_holder(""), Err(NameError::Empty));
        for (bad, c) in [("a b", ' '), ("tab\there", '\t'), ("bell\u{7}", '\u{7}')] {
            assert_eq!(
                check_holder(bad),
                Err(NameError::HolderCharacter { bad: c }),
                "{bad:?}"
            );
        }
        let message = check_holder("a b").unwrap_err().to_string();
        assert!(message.contains("whitespace"), "{message}");
        for ambiguous in ["localhost", "LocalHost"] {
            assert_eq!(check_holder(ambiguous), Err(NameError::Ambiguous));
        }
        assert_eq!(check_holder("localhost2"), Ok(()));
    }

    #[test]
    fn machine_ids_and_reasons() {
        assert_eq!(check_machine_id("0123456789abcdef0123456789abcdef"), Ok(()));
        assert_eq!(check_machine_id(""), Ok(()));
        assert_eq!(
            check_machine_id(&"a".repeat(MAX_MACHINE_ID_LEN + 1)),
            Err(NameError::TooLong { len: 65, max: 64 })
        );
        assert_eq!(
            check_machine_id("ab\"cd"),
            Err(NameError::MachineIdCharacter { bad: '"' })
        );
        assert_eq!(check_reason("kernel CVE, see ticket #42"), Ok(()));
        assert_eq!(check_reason("  "), Err(NameError::Empty));
        assert_eq!(
            check_reason("red\u{1b}[31m"),
            Err(NameError::ControlCharacter { bad: '\u{1b}' })
        );
        assert!(check_reason(&"r".repeat(MAX_REASON_LEN + 1)).is_err());
    }

    #[test]
    fn host_port_addresses() {
        for good in [
            "127.0.0.1:7421",
            "[::1]:7421",
            "cp-1.example.com:1",
            "localhost:65535",
        ] {
            assert_eq!(check_host_port(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("127.0.0.1", "host:port"),
            ("127.0.0.1:0", "between 1 and 65535"),
            ("127.0.0.1:65536", "invalid port"),
            (":7421", "host must not be empty"),
            ("::1:7421", "brackets"),
            ("[::1:7421", "unterminated"),
            ("[zz]:1", "invalid IPv6"),
            ("10.0.0.256:1", "not a valid IPv4"),
            ("-a.example:1", "neither an IP address"),
            ("a_b:1", "neither an IP address"),
        ] {
            let message = check_host_port(bad).expect_err(bad);
            assert!(message.contains(why), "{bad}: {message}");
        }
        let long = format!("{}:1", "a.".repeat(127) + "a");
        assert!(check_host_port(&long).is_err());
    }
}
