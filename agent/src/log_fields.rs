//! The BATON_* fields, named once: the spans events are logged in, and the hook environment.
//!
//! `journalctl -u baton BATON_PHASE=rebooting` and `BATON_GROUP=workers`
//! work because every host agent event is logged inside [`lease_span`]
//! (the agent enters one per phase step) and every lease change a voter
//! applies is logged inside one too. Events themselves never repeat these
//! fields: the journal would then carry them twice.

use tracing::Span;

/// The host agent's phase (`idle`, `draining`, ...).
pub const PHASE: &str = "BATON_PHASE";
/// The lease group.
pub const GROUP: &str = "BATON_GROUP";
/// The holder (host name).
pub const HOLDER: &str = "BATON_HOLDER";
/// The fencing token of the grant.
pub const TOKEN: &str = "BATON_TOKEN";

/// The span admin actions and refused calls are logged in: who called
/// (`BATON_CALLER`, the certificate's name) in which role (`BATON_ROLE`).
pub fn caller_span(caller: &str, role: &str) -> Span {
    tracing::info_span!("caller", BATON_CALLER = caller, BATON_ROLE = role)
}

/// The span that gives the events logged in it the BATON_* fields; a field
/// given as `None` is left out.
pub fn lease_span(
    phase: Option<&str>,
    group: &str,
    holder: Option<&str>,
    token: Option<u64>,
) -> Span {
    // The literal names here must be the constants above (see the test).
    tracing::info_span!(
        "baton",
        BATON_PHASE = phase,
        BATON_GROUP = group,
        BATON_HOLDER = holder,
        BATON_TOKEN = token
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_carries_the_named_fields() {
        // A span needs a subscriber that is interested to have metadata.
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = lease_span(Some("draining"), "workers", Some("h1"), Some(7));
            let fields: Vec<String> = span
                .metadata()
                .expect("the span is enabled")
                .fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect();
            assert_eq!(fields, [PHASE, GROUP, HOLDER, TOKEN]);
        });
    }
}
