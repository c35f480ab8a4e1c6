//! Kubernetes node labels as written in the config (`key=value`): the one parser.

/// Longest label name (the part after an optional `prefix/`).
const MAX_NAME: usize = 63;
/// Longest label prefix (a DNS subdomain).
const MAX_PREFIX: usize = 253;
/// Longest label value.
const MAX_VALUE: usize = 63;

fn is_segment(text: &str, max: usize, empty_ok: bool) -> bool {
    if text.is_empty() {
        return empty_ok;
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    text.len() <= max
        && text.chars().all(|c| alnum(c) || "-_.".contains(c))
        && text.starts_with(alnum)
        && text.ends_with(alnum)
}

/// Parses `key=value` with Kubernetes' label syntax (`[prefix/]name`, name
/// and value at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric; the value may be empty). `Err` says what is wrong.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=value"))?;
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let dns = prefix.len() <= MAX_PREFIX
            && !prefix.is_empty()
            && prefix
                .split('.')
                .all(|part| is_segment(part, 63, false) && !part.contains('_'));
        if !dns {
            return Err(format!("label prefix {prefix:?} is not a DNS subdomain"));
        }
    }
    if !is_segment(name, MAX_NAME, false) {
        return Err(format!(
            "label name {name:?}: 1-{MAX_NAME} characters of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit"
        ));
    }
    if !is_segment(value, MAX_VALUE, true) {
        return Err(format!(
            "label value {value:?}: at most {MAX_VALUE} characters of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        assert_eq!(
            parse_label("baton.io/rebooting=true"),
            Ok(("baton.io/rebooting".into(), "true".into()))
        );
        assert_eq!(
            parse_label("maintenance="),
            Ok(("maintenance".into(), "".into()))
        );
    }

    #[test]
    fn bad_labels_are_refused() {
        for (text, why) in [
            ("novalue", "key=value"),
            ("=x", "label name"),
            ("a b=c", "label name"),
            ("k=-x", "label value"),
            ("Bad_Prefix/k=v", "prefix"),
            ("/k=v", "prefix"),
        ] {
            assert!(parse_label(text).unwrap_err().contains(why), "{text}");
        }
        let long = format!("k={}", "v".repeat(64));
        assert!(parse_label(&long).is_err());
    }
}
