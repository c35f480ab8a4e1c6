//! Notifications: the events a webhook hears of, and the message template with its placeholders.

use super::limits::MAX_NOTIFICATION_BYTES;

/// What a notification tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// The host holds the lease and starts to drain.
    Draining,
    /// Drained, the reboot is being asked for.
    Rebooting,
    /// Back from the reboot, checked, undrained.
    Back,
    /// Something went wrong: a drain failed, the update did not take, a
    /// check after the reboot failed, a drain was forced.
    Failed,
}

/// Every event, as named in the config.
pub const NOTIFY_EVENTS: [NotifyEvent; 4] = [
    NotifyEvent::Draining,
    NotifyEvent::Rebooting,
    NotifyEvent::Back,
    NotifyEvent::Failed,
];

impl NotifyEvent {
    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::Draining => "draining",
            NotifyEvent::Rebooting => "rebooting",
            NotifyEvent::Back => "back",
            NotifyEvent::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<NotifyEvent> {
        NOTIFY_EVENTS.into_iter().find(|e| e.name() == name)
    }
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 5] = ["host", "group", "phase", "version", "message"];

/// The template used when a webhook names none.
pub const DEFAULT_TEMPLATE: &str = "baton: {host} (group {group}): {phase}: {message}";

/// Longest template accepted.
pub const MAX_TEMPLATE_BYTES: usize = 1024;

/// What fills a template's placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyFields<'a> {
    pub host: &'a str,
    pub group: &'a str,
    /// The event's name (`draining`, `rebooting`, `back`, `failed`).
    pub phase: &'a str,
    /// The pending version (or the update's reason when no version is known).
    pub version: &'a str,
    /// What happened, in words.
    pub message: &'a str,
}

/// Checks a template: `{name}` placeholders must be known ones; `{{` and
/// `}}` stand for `{` and `}`. `Err` says what is wrong.
pub fn check_template(template: &str) -> Result<(), String> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(format!("longer than {MAX_TEMPLATE_BYTES} bytes"));
    }
    walk(template, |_| Some(String::new())).map(|_| ())
}

/// Fills in `template` (checked with [`check_template`]); the result is cut
/// at [`MAX_NOTIFICATION_BYTES`] (on a character boundary).
pub fn render(template: &str, fields: &NotifyFields<'_>) -> String {
    let text = walk(template, |name| {
        Some(
            match name {
                "host" => fields.host,
                "group" => fields.group,
                "phase" => fields.phase,
                "version" => fields.version,
                "message" => fields.message,
                _ => return None,
            }
            .to_string(),
        )
    })
    .unwrap_or_else(|_| template.to_string());
    truncate(text, MAX_NOTIFICATION_BYTES)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn walk(template: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let rest = &template[at + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(format!("unclosed {{ at byte {at}"));
                };
                let name = &rest[..end];
                match value(name).filter(|_| PLACEHOLDERS.contains(&name)) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(format!(
                            "unknown placeholder {{{name}}}; known: {}",
                            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                        ))
                    }
                }
                // Skip the name and the closing brace.
                for _ in 0..=name.chars().count() {
                    chars.next();
                }
            }
            '}' => return Err(format!("a lone }} at byte {at} (write }}}} for one)")),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> NotifyFields<'static> {
        NotifyFields {
            host: "w1",
            group: "workers",
            phase: "rebooting",
            version: "4152.2.1",
            message: "drained, rebooting now",
        }
    }

    #[test]
    fn placeholders_are_filled_in() {
        let text = render("{host}/{group} is {phase} into {version} {{ok}}", &fields());
        assert_eq!(text, "w1/workers is rebooting into 4152.2.1 {ok}");
        assert_eq!(
            render(DEFAULT_TEMPLATE, &fields()),
            "baton: w1 (group workers): rebooting: drained, rebooting now"
        );
        assert_eq!(check_template(DEFAULT_TEMPLATE), Ok(()));
    }

    #[test]
    fn unknown_or_broken_placeholders_are_refused() {
        assert!(check_template("{hostname}")
            .unwrap_err()
            .contains("{hostname}"));
        assert!(check_template("oops {host")
            .unwrap_err()
            .contains("unclosed"));
        assert!(check_template("a } b").unwrap_err().contains("lone"));
        assert!(check_template(&"x".repeat(MAX_TEMPLATE_BYTES + 1))
            .unwrap_err()
            .contains("longer"));
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_NOTIFICATION_BYTES);
        let f = NotifyFields {
            message: &long,
            ..fields()
        };
        let text = render("{message}", &f);
        assert!(text.len() <= MAX_NOTIFICATION_BYTES);
        assert!(text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn event_names_round_trip() {
        for e in NOTIFY_EVENTS {
            assert_eq!(NotifyEvent::parse(e.name()), Some(e));
        }
        assert_eq!(NotifyEvent::parse("rebooted"), None);
    }
}
