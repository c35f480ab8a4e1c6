//! The one rule for the http(s) URLs baton calls out to (Prometheus, webhooks).

use super::limits::MAX_URL_BYTES;

/// Whether `url` is an absolute `http://` or `https://` URL with a host,
/// no user info (credentials belong in no config value that is logged), no
/// fragment, no whitespace or control characters, and at most
/// [`MAX_URL_BYTES`] long. `Err` says what is wrong.
pub fn check_http_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_BYTES {
        return Err(format!("longer than {MAX_URL_BYTES} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("names no host".into());
    }
    if authority.contains('@') {
        return Err("must not carry a user or password".into());
    }
    if url.contains('#') {
        return Err("must not have a #fragment".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: [::1]:9090
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err("an IPv6 address needs its closing ]".into()),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("names no host".into());
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!("port {port:?} is not a number from 0 to 65535"));
        }
    }
    Ok(())
}

/// `url` as it may be logged: scheme and host only. A chat webhook's path
/// is its secret (Slack's `/services/T.../B.../XXXX`), so it never reaches
/// the journal.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => return "(a URL)".to_string(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.len() == rest.len() {
        url.to_string()
    } else {
        format!("{scheme}://{authority}/...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_keep_only_scheme_and_host() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/..."
        );
        assert_eq!(redact_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(redact_url("http://h:1?token=x"), "http://h:1/...");
        assert_eq!(redact_url("garbage"), "(a URL)");
    }

    #[test]
    fn http_urls_with_a_host_pass() {
        for ok in [
            "http://prometheus:9090",
            "http://prometheus.monitoring.svc:9090/",
            "https://hooks.slack.com/services/T000/B000/XXXX",
            "http://127.0.0.1:8080/hook?x=1",
            "http://[::1]:9090",
        ] {
            assert_eq!(check_http_url(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn other_urls_are_refused_with_the_reason() {
        let cases = [
            ("ftp://x", "http:// or https://"),
            ("prometheus:9090", "http:// or https://"),
            ("http://", "no host"),
            ("http:///path", "no host"),
            ("http://user:pw@host", "user or password"),
            ("http://host/a b", "spaces"),
            ("http://host/#x", "fragment"),
            ("http://host:99999", "port"),
            ("http://host:abc/", "port"),
        ];
        for (url, why) in cases {
            let err = check_http_url(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_URL_BYTES));
        assert!(check_http_url(&long).unwrap_err().contains("longer"));
    }
}
