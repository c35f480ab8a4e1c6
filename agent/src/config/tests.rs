use std::time::Duration;

use jiff::civil::{Time, Weekday};

use super::cluster::host_name_or_localhost;
use super::fragments::line_of;
use super::*;
use crate::rules::names::{check_group, check_host_port};
use crate::rules::window::{parse_time_of_day, parse_weekday, WindowSpec};

const EXAMPLE: &str = r#"[node]
name = "cp-1"                 # default: the host name
state_dir = "/var/lib/baton"  # default
# group = "default"

[cluster]
listen = "127.0.0.1:7421"
voters = [
  { id = 1, name = "cp-1", address = "127.0.0.1:7421" },
  { id = 2, name = "cp-2", address = "127.0.0.1:7422" },
  { id = 3, name = "cp-3", address = "127.0.0.1:7423" },
]
# heartbeat_interval = "100ms"
# election_timeout = "400ms"
# snapshot_every = 1000
# connect_timeout = "1s"
# request_timeout = "3s"

[lease]
default_max_holders = 1
waiter_ttl = "30s"
# hold_timeout = "2h"
"#;

/// A valid config with a fixed node name, for tests that change one key.
const MINIMAL: &str = "[node]\nname = \"n1\"\n[cluster]\nlisten = \"127.0.0.1:7421\"\n";

fn frag(name: &str, text: &str) -> (PathBuf, String) {
    (PathBuf::from(name), text.to_owned())
}

fn load_one(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_fragments(&[frag("/etc/baton/baton.toml", text)])
}

/// Asserts an `Invalid` error and returns its message.
#[track_caller]
fn assert_invalid(
    result: Result<Settings, ConfigError>,
    file: &str,
    key: &str,
    line: usize,
) -> String {
    match result {
        Err(ConfigError::Invalid {
            file: f,
            line: l,
            key: k,
            message,
        }) => {
            assert_eq!(
                (f.as_path(), k.as_str(), l),
                (Path::new(file), key, line),
                "message: {message}"
            );
            message
        }
        other => panic!("expected Invalid at {file}:{line} {key}, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid_one(text: &str, key: &str, line: usize) -> String {
    assert_invalid(load_one(text), "/etc/baton/baton.toml", key, line)
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

// --- the example and defaults -------------------------------------------

#[test]
fn example_parses_as_written() {
    let settings = load_one(EXAMPLE).unwrap();
    assert_eq!(
        settings,
        Settings {
            node: NodeSettings {
                name: "cp-1".into(),
                state_dir: "/var/lib/baton".into(),
                group: "default".into(),
            },
            cluster: ClusterSettings {
                listen: Some("127.0.0.1:7421".parse().unwrap()),
                voters: (1..=3)
                    .map(|i| VoterSettings {
                        id: i,
                        name: format!("cp-{i}"),
                        address: format!("127.0.0.1:742{i}"),
                    })
                    .collect(),
                heartbeat_interval: Duration::from_millis(100),
                election_timeout: Duration::from_millis(300),
                snapshot_every: 1000,
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(3),
            },
            lease: LeaseSettings {
                default_max_holders: 1,
                waiter_ttl: Duration::from_secs(30),
                hold_timeout: None,
                settle_time: None,
            },
            updates: UpdateSettings {
                source: UpdateSourceKind::Auto,
                check_interval: None,
                poll_interval: Duration::from_secs(10),
                report_interval: Duration::from_secs(30),
                dbus_address: None,
                os_release: "/etc/os-release".into(),
                reboot_required: "/var/run/reboot-required".into(),
                unattended_upgrade: vec![
                    "systemctl".into(),
                    "start".into(),
                    "apt-daily-upgrade.service".into(),
                ],
                apt_conf_dir: "/etc/apt/apt.conf.d".into(),
                sentinel_file: None,
                sentinel_command: None,
            },
            reboot: RebootSettings {
                method: RebootMethod::Logind,
                time_zone: "localtime".into(),
                windows: vec![],
                freezes: vec![],
                blockers: vec![],
                blocker_retry: Duration::from_secs(60),
                boot_id_path: "/proc/sys/kernel/random/boot_id".into(),
            },
            hooks: HookSettings {
                before_reboot: vec![],
                after_reboot: vec![],
            },
            kubernetes: None,
            tls: TlsSettings::Mutual(TlsFiles::default()),
            metrics: None,
            fleetlock: None,
            blockers: BlockerSettings::default(),
            notify: vec![],
            sources: vec![PathBuf::from("/etc/baton/baton.toml")],
        }
    );
    assert_eq!(settings.this_voter().map(|v| v.id), Some(1));
}

#[test]
fn voter_files_differ_only_in_name_and_listen() {
    let text = EXAMPLE
        .replace("name = \"cp-1\"                 #", "name = \"cp-2\" #")
        .replace("listen = \"127.0.0.1:7421\"", "listen = \"127.0.0.1:7422\"");
    let settings = load_one(&text).unwrap();
    assert_eq!(settings.node.name, "cp-2");
    assert_eq!(settings.cluster.listen.map(|l| l.port()), Some(7422));
    assert_eq!(settings.this_voter().map(|v| v.id), Some(2));
}

#[test]
fn defaults_fill_unset_keys() {
    let settings = load_one("[cluster]\nlisten = \"[::1]:7421\"\n").unwrap();
    assert!(!settings.node.name.is_empty());
    assert_eq!(settings.node.state_dir, Path::new("/var/lib/baton"));
    assert_eq!(settings.node.group, "default");
    assert!(settings.cluster.voters.is_empty());
    assert_eq!(settings.cluster.snapshot_every, 1000);
    assert_eq!(settings.lease.default_max_holders, 1);
    assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(30));
    assert_eq!(settings.lease.hold_timeout, None);
    assert_eq!(settings.lease.settle_time, None);
    assert_eq!(settings.this_voter(), None);
}

#[test]
fn node_name_defaults_to_trimmed_host_name_or_localhost() {
    assert_eq!(host_name_or_localhost(Some("cp-9\n".into())), "cp-9");
    assert_eq!(host_name_or_localhost(Some(" \n".into())), "localhost");
    assert_eq!(host_name_or_localhost(None), "localhost");

    let validator = Validator { fragments: &[] };
    let mut inputs = Inputs::default();
    inputs.overlay(
        toml::from_str(MINIMAL.replace("name = \"n1\"", "").as_str()).unwrap(),
        0,
    );
    let settings = validator
        .settings(inputs, || Some("host-a\n".into()))
        .unwrap();
    assert_eq!(settings.node.name, "host-a");

    let mut inputs = Inputs::default();
    inputs.overlay(
        toml::from_str("[cluster]\nlisten = \"127.0.0.1:1\"\n").unwrap(),
        0,
    );
    let err = validator
        .settings(inputs, || Some("bad host".into()))
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidDefault { key, .. } if key == "node.name"),
        "{err:?}"
    );
}

#[test]
fn durations_use_friendly_format() {
    let text = format!(
        "{MINIMAL}heartbeat_interval = \"50ms\"\nelection_timeout = \"1s\"\n\
         connect_timeout = \"1m\"\nrequest_timeout = \"1h30m\"\nsnapshot_every = 5\n\
         [lease]\nwaiter_ttl = \"2h\"\nhold_timeout = \"500ms\"\ndefault_max_holders = 3\n\
         settle_time = \"5m\"\n"
    );
    let settings = load_one(&text).unwrap();
    let c = &settings.cluster;
    assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(c.election_timeout, Duration::from_secs(1));
    assert_eq!(c.connect_timeout, Duration::from_secs(60));
    assert_eq!(c.request_timeout, Duration::from_secs(5400));
    assert_eq!(c.snapshot_every, 5);
    assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(7200));
    assert_eq!(
        settings.lease.hold_timeout,
        Some(Duration::from_millis(500))
    );
    assert_eq!(settings.lease.default_max_holders, 3);
    assert_eq!(settings.lease.settle_time, Some(Duration::from_secs(300)));
}

#[test]
fn array_of_tables_voters_parse() {
    let text = format!(
        "{MINIMAL}[[cluster.voters]]\nid = 7\nname = \"n1\"\naddress = \"cp-1.example.com:7421\"\n\
         [[cluster.voters]]\nid = 8\nname = \"n2\"\naddress = \"[fd00::2]:7421\"\n"
    );
    let settings = load_one(&text).unwrap();
    assert_eq!(settings.cluster.voters.len(), 2);
    assert_eq!(settings.cluster.voters[1].address, "[fd00::2]:7421");
    assert_eq!(settings.this_voter().map(|v| v.id), Some(7));
}

// --- cluster.listen ---------------------------------------------------------

#[test]
fn listen_is_optional_on_a_client_host() {
    // No `[cluster]` table at all: a client host with no voters yet.
    let settings = load_one("[node]\nname = \"n1\"\n").unwrap();
    assert_eq!(settings.cluster.listen, None);
    assert!(settings.cluster.voters.is_empty());
    assert_eq!(settings.cluster.snapshot_every, 1000);
    // No fragments at all is the same situation.
    assert!(Settings::from_fragments(&[]).is_ok());
    // Voters that do not include this node.
    let text = "[node]\nname = \"worker-1\"\n[cluster]\n\
                voters = [{ id = 1, name = \"cp-1\", address = \"h:1\" }]\n";
    let settings = load_one(text).unwrap();
    assert_eq!(settings.cluster.listen, None);
    assert_eq!(settings.this_voter(), None);
}

#[test]
fn listen_is_required_on_a_voter() {
    let voters = "voters = [\n{ id = 1, name = \"a\", address = \"h:1\" },\n\
                  { id = 2, name = \"n1\", address = \"h:2\" },\n]\n";
    let text = format!("[node]\nname = \"n1\"\n\n[cluster]\n{voters}");
    let message = assert_invalid_one(&text, "cluster.listen", 4);
    assert!(message.contains("cluster.voters[1]"), "{message}");
    // Without a `[cluster]` header, the dotted key's table is blamed.
    let text =
        "[node]\nname = \"a\"\n\n[[cluster.voters]]\nid = 1\nname = \"a\"\naddress = \"h:1\"\n";
    assert_invalid_one(text, "cluster.listen", 4);
    // Voters from a vendor drop-in, node name from the main file: the
    // last `[cluster]` table is where listen belongs.
    let fragments = [
        frag("vendor.toml", &format!("[cluster]\n{voters}")),
        frag(
            "main.toml",
            "[node]\nname = \"n1\"\n[cluster]\nheartbeat_interval = \"50ms\"\n",
        ),
        frag("local.toml", "[lease]\nwaiter_ttl = \"1m\"\n"),
    ];
    assert_invalid(
        Settings::from_fragments(&fragments),
        "main.toml",
        "cluster.listen",
        3,
    );
    let fragments = [
        fragments[0].clone(),
        frag(
            "main.toml",
            "[node]\nname = \"n1\"\n[cluster]\nlisten = \"0.0.0.0:7421\"\n",
        ),
    ];
    let settings = Settings::from_fragments(&fragments).unwrap();
    assert_eq!(
        settings.cluster.listen,
        Some("0.0.0.0:7421".parse().unwrap())
    );
    assert_eq!(settings.this_voter().map(|v| v.id), Some(2));
}

#[test]
fn listen_missing_without_a_located_table_is_a_missing_error() {
    // Unreachable through fragments (voters always come with a
    // `cluster` table), but the fallback must still name the key.
    let validator = Validator { fragments: &[] };
    let mut inputs = Inputs::default();
    inputs.overlay(
        toml::from_str("[node]\nname = \"n1\"\n[cluster]\nvoters = [{ id = 1, name = \"n1\", address = \"h:1\" }]\n")
            .unwrap(),
        0,
    );
    inputs.cluster.table = None;
    let err = validator.settings(inputs, || None).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Missing { key } if key == "cluster.listen"),
        "{err:?}"
    );
    assert!(err.to_string().contains("cluster.listen"), "{err}");
}

#[test]
fn listen_must_be_a_socket_address() {
    let text = "[node]\nname = \"n1\"\n\n\n\n[cluster]\nlisten = \"127.0.0.1:99999\"\n";
    let err = load_one(text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/baton/baton.toml:7: cluster.listen: invalid socket address \
         \"127.0.0.1:99999\": invalid socket address syntax"
    );
    assert_invalid_one(text, "cluster.listen", 7);
    assert_invalid_one("[cluster]\nlisten = \"localhost:1\"\n", "cluster.listen", 2);
}

// --- voters -------------------------------------------------------------

fn with_voters(voters: &str) -> String {
    format!("{MINIMAL}voters = [\n{voters}]\n")
}

#[test]
fn empty_voter_list_means_client_only() {
    let settings = load_one(&with_voters("")).unwrap();
    assert!(settings.cluster.voters.is_empty());
    assert_eq!(settings.this_voter(), None);
}

#[test]
fn voter_id_must_be_positive() {
    let text = with_voters("{ id = 0, name = \"a\", address = \"h:1\" },\n");
    let message = assert_invalid_one(&text, "cluster.voters[0].id", 6);
    assert!(message.contains("at least 1"), "{message}");
}

#[test]
fn voter_ids_must_be_unique() {
    let text = with_voters(
        "{ id = 1, name = \"a\", address = \"h:1\" },\n{ id = 1, name = \"b\", address = \"h:2\" },\n",
    );
    let message = assert_invalid_one(&text, "cluster.voters[1].id", 7);
    assert!(message.contains("cluster.voters[0]"), "{message}");
}

#[test]
fn voter_names_must_be_unique() {
    let text = with_voters(
        "{ id = 1, name = \"a\", address = \"h:1\" },\n{ id = 2, name = \"a\", address = \"h:2\" },\n",
    );
    assert_invalid_one(&text, "cluster.voters[1].name", 7);
}

#[test]
fn voter_names_must_be_valid_holder_names() {
    let text = with_voters("{ id = 1, name = \"a b\", address = \"h:1\" },\n");
    assert_invalid_one(&text, "cluster.voters[0].name", 6);
}

#[test]
fn voter_addresses_must_be_unique() {
    let text = with_voters(
        "{ id = 1, name = \"a\", address = \"Host:1\" },\n{ id = 2, name = \"b\", address = \"host:1\" },\n",
    );
    assert_invalid_one(&text, "cluster.voters[1].address", 7);
}

#[test]
fn voter_address_must_be_host_and_port() {
    for bad in [
        "host",
        "host:0",
        "host:99999",
        "host:",
        ":7421",
        "::1:7421",
        "[::1:7421",
        "[zz::1]:7421",
        "-bad.example:1",
        "bad_host:1",
        "a..b:1",
        "10.0.0.256:1",
        "h st:1",
    ] {
        let text = with_voters(&format!(
            "{{ id = 1, name = \"a\", address = \"{bad}\" }},\n"
        ));
        let message = assert_invalid_one(&text, "cluster.voters[0].address", 6);
        assert!(message.contains("invalid address"), "{bad}: {message}");
    }
    for good in [
        "10.0.0.1:1",
        "[::1]:65535",
        "cp-1:7421",
        "cp-1.example.com:7421",
        "A1:2",
    ] {
        assert_eq!(check_host_port(good), Ok(()), "{good}");
    }
}

#[test]
fn voter_fields_are_required() {
    let text = with_voters("{ id = 1, name = \"a\" },\n");
    let message = assert_invalid_one(&text, "cluster.voters[0].address", 6);
    assert!(message.contains("missing"), "{message}");
}

// --- node ---------------------------------------------------------------

#[test]
fn node_name_must_be_a_valid_holder_name() {
    let base = "[cluster]\nlisten = \"127.0.0.1:1\"\n[node]\n";
    let long = "x".repeat(254);
    for bad in ["", "a b", "tab\there", "bell\u{7}", long.as_str()] {
        let text = format!("{base}name = {}\n", toml_string(bad));
        assert_invalid_one(&text, "node.name", 4);
    }
    let ok = format!("{base}name = \"{}\"\n", "x".repeat(253));
    assert!(load_one(&ok).is_ok());
    assert!(load_one(&format!("{base}name = \"höst/1@dc\"\n")).is_ok());
}

/// A TOML basic string for `s` (control characters escaped).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[test]
fn node_group_must_match_pattern() {
    let long = "g".repeat(129);
    for bad in ["", "a b", "a/b", "grüppe", long.as_str()] {
        // A second fragment, since MINIMAL already opens `[node]`.
        let result = Settings::from_fragments(&[
            frag("main.toml", MINIMAL),
            frag("50-group.toml", &format!("\n[node]\ngroup = \"{bad}\"\n")),
        ]);
        assert_invalid(result, "50-group.toml", "node.group", 3);
    }
    let ok = MINIMAL.replace("name = \"n1\"", "name = \"n1\"\ngroup = \"A-z_0.9\"");
    assert_eq!(load_one(&ok).unwrap().node.group, "A-z_0.9");
    assert_eq!(check_group(&"g".repeat(128)), Ok(()));
}

#[test]
fn node_state_dir_must_be_absolute() {
    let text =
        "[node]\nname = \"n1\"\nstate_dir = \"var/lib\"\n[cluster]\nlisten = \"127.0.0.1:1\"\n";
    assert_invalid_one(text, "node.state_dir", 3);
}

// --- lease and timings --------------------------------------------------

#[test]
fn default_max_holders_must_be_positive() {
    let text = format!("{MINIMAL}[lease]\ndefault_max_holders = 0\n");
    assert_invalid_one(&text, "lease.default_max_holders", 6);
}

#[test]
fn durations_must_parse_and_be_positive() {
    for (bad, why) in [
        ("soon", "invalid duration"),
        ("0s", "greater than zero"),
        ("-5s", "greater than zero"),
        ("1d", "invalid duration"),
    ] {
        let text = format!("{MINIMAL}[lease]\n\nwaiter_ttl = \"{bad}\"\n");
        let message = assert_invalid_one(&text, "lease.waiter_ttl", 7);
        assert!(message.contains(why), "{bad}: {message}");
    }
    for key in [
        "heartbeat_interval",
        "election_timeout",
        "connect_timeout",
        "request_timeout",
    ] {
        let text = format!("{MINIMAL}{key} = \"0ms\"\n");
        assert_invalid_one(&text, &format!("cluster.{key}"), 5);
    }
    let text = format!("{MINIMAL}[lease]\nhold_timeout = \"never\"\n");
    assert_invalid_one(&text, "lease.hold_timeout", 6);
    let text = format!("{MINIMAL}[lease]\nsettle_time = \"0s\"\n");
    assert_invalid_one(&text, "lease.settle_time", 6);
}

#[test]
fn election_timeout_must_exceed_twice_heartbeat() {
    let text = format!("{MINIMAL}heartbeat_interval = \"100ms\"\nelection_timeout = \"200ms\"\n");
    let message = assert_invalid_one(&text, "cluster.election_timeout", 6);
    assert!(message.contains("2 * heartbeat_interval"), "{message}");
    // Only the heartbeat was configured: it is the one to blame.
    let text = format!("{MINIMAL}heartbeat_interval = \"300ms\"\n");
    assert_invalid_one(&text, "cluster.heartbeat_interval", 5);
    let text = format!("{MINIMAL}heartbeat_interval = \"100ms\"\nelection_timeout = \"201ms\"\n");
    assert!(load_one(&text).is_ok());
}

#[test]
fn snapshot_every_must_be_positive() {
    let text = format!("{MINIMAL}snapshot_every = 0\n");
    assert_invalid_one(&text, "cluster.snapshot_every", 5);
}

// --- unknown keys, types, syntax ---------------------------------------

#[test]
fn unknown_top_level_key() {
    let text = format!("{MINIMAL}\n");
    let text = format!("bogus = 1\n{text}");
    let message = assert_invalid_one(&text, "bogus", 1);
    assert!(message.starts_with("unknown key `bogus`"), "{message}");
}

#[test]
fn unknown_top_level_table() {
    assert_invalid_one(&format!("{MINIMAL}[leases]\nx = 1\n"), "leases", 5);
}

#[test]
fn unknown_key_in_table() {
    let text = format!("{MINIMAL}\nlisten_on = \"x\"\n");
    let message = assert_invalid_one(&text, "cluster.listen_on", 6);
    assert!(message.contains("`listen`"), "{message}");
    assert_invalid_one("node.name = \"n\"\nnode.nmae = \"x\"\n", "node.nmae", 2);
}

#[test]
fn unknown_key_in_voter_entry() {
    let text = with_voters(
        "{ id = 1, name = \"a\", address = \"h:1\" },\n{ id = 2, name = \"b\", adress = \"h:2\" },\n",
    );
    assert_invalid_one(&text, "cluster.voters[1].adress", 7);
    let text =
        format!("{MINIMAL}[[cluster.voters]]\nid = 1\n[[cluster.voters]]\nid = 2\nport = 3\n");
    assert_invalid_one(&text, "cluster.voters[1].port", 9);
}

#[test]
fn unusual_keys_are_quoted_in_paths() {
    assert_invalid_one("[node]\n\"my key\" = 1\n", "node.\"my key\"", 2);
}

#[test]
fn wrong_type() {
    let text = format!("{MINIMAL}[lease]\ndefault_max_holders = \"one\"\n");
    let message = assert_invalid_one(&text, "lease.default_max_holders", 6);
    assert!(message.contains("invalid type"), "{message}");
    assert_invalid_one(
        &format!("{MINIMAL}snapshot_every = -1\n"),
        "cluster.snapshot_every",
        5,
    );
    assert_invalid_one("node = 3\n", "node", 1);
    assert_invalid_one(&with_voters("\"cp-1:1\",\n"), "cluster.voters[0]", 6);
    assert_invalid_one(
        &format!("{MINIMAL}election_timeout = 400\n"),
        "cluster.election_timeout",
        5,
    );
}

#[test]
fn syntax_error_names_file_and_line() {
    let text = "[node]\nname = \"n1\"\n\n[cluster]\nlisten = 127.0.0.1:7421\n";
    match load_one(text) {
        Err(ConfigError::Syntax {
            file,
            line,
            message,
        }) => {
            assert_eq!(file, Path::new("/etc/baton/baton.toml"));
            assert_eq!(line, 5, "{message}");
        }
        other => panic!("expected syntax error, got {other:?}"),
    }
    let err = load_one("[node]\nname = \"a\"\n[node]\n").unwrap_err();
    assert!(
        matches!(err, ConfigError::Syntax { line: 3, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("/etc/baton/baton.toml:3: "),
        "{err}"
    );
}

// --- merging --------------------------------------------------------------

#[test]
fn tables_merge_and_arrays_replace() {
    let fragments = [
        frag("vendor.toml", &with_voters("{ id = 1, name = \"a\", address = \"h:1\" },\n{ id = 2, name = \"b\", address = \"h:2\" },\n")),
        frag("main.toml", "[node]\nstate_dir = \"/srv/baton\"\n[cluster]\nvoters = [{ id = 9, name = \"z\", address = \"h:9\" }]\n"),
    ];
    let settings = Settings::from_fragments(&fragments).unwrap();
    assert_eq!(settings.node.name, "n1");
    assert_eq!(settings.node.state_dir, Path::new("/srv/baton"));
    assert_eq!(settings.cluster.voters.len(), 1);
    assert_eq!(settings.cluster.voters[0].id, 9);
    assert_eq!(
        settings.sources,
        vec![PathBuf::from("vendor.toml"), PathBuf::from("main.toml")]
    );
}

#[test]
fn errors_point_at_the_value_in_force() {
    // The first fragment's bad value is overridden, so it is not reported;
    // the second fragment's bad value is, with that fragment's location.
    let fragments = [
        frag(
            "a.toml",
            &format!("{MINIMAL}[lease]\nwaiter_ttl = \"bad\"\n"),
        ),
        frag("b.toml", "\n\n[lease]\nwaiter_ttl = \"0s\"\n"),
    ];
    assert_invalid(
        Settings::from_fragments(&fragments),
        "b.toml",
        "lease.waiter_ttl",
        4,
    );
    let fragments = [
        frag(
            "a.toml",
            &format!("{MINIMAL}[lease]\nwaiter_ttl = \"bad\"\n"),
        ),
        frag("b.toml", "[lease]\nwaiter_ttl = \"5s\"\n"),
    ];
    assert!(Settings::from_fragments(&fragments).is_ok());
}

// --- updates, reboot, hooks, kubernetes -------------------------------------

const FULL_EXAMPLE: &str = r#"[node]
name = "worker-7"
group = "workers"

[cluster]
voters = [ { id = 1, name = "cp-1", address = "10.0.0.1:7421" } ]

[updates]
source = "apt"
check_interval = "6h"

[reboot]
time_zone = "Europe/Berlin"
[[reboot.window]]
days = ["Mon", "Tue", "Wed", "Thu"]
start = "22:30"
length = "3h"
[[reboot.blocker]]
command = ["/usr/local/bin/no-active-backups"]
timeout = "30s"

[[hooks.before_reboot]]
command = ["/usr/local/bin/stop-workload"]
timeout = "2m"
force = true
[[hooks.after_reboot]]
command = ["/usr/local/bin/health-check"]

[kubernetes]
kubeconfig = "/etc/kubernetes/kubelet.conf"
drain_timeout = "15m"
pod_selector = "app!=critical"
"#;

fn with(text: &str) -> String {
    format!("{MINIMAL}{text}")
}

fn command(argv: &[&str], timeout: Duration, force: bool) -> CommandSettings {
    CommandSettings {
        command: argv.iter().map(|s| s.to_string()).collect(),
        timeout,
        force,
    }
}

#[test]
fn full_example_parses_as_written() {
    let settings = load_one(FULL_EXAMPLE).unwrap();
    assert_eq!(settings.node.name, "worker-7");
    assert_eq!(settings.node.group, "workers");
    assert_eq!(settings.cluster.listen, None);
    assert_eq!(settings.this_voter(), None);
    assert_eq!(
        settings.updates,
        UpdateSettings {
            source: UpdateSourceKind::Apt,
            check_interval: Some(Duration::from_secs(6 * 3600)),
            poll_interval: Duration::from_secs(10),
            report_interval: Duration::from_secs(30),
            dbus_address: None,
            os_release: "/etc/os-release".into(),
            reboot_required: "/var/run/reboot-required".into(),
            unattended_upgrade: vec![
                "systemctl".into(),
                "start".into(),
                "apt-daily-upgrade.service".into(),
            ],
            apt_conf_dir: "/etc/apt/apt.conf.d".into(),
            sentinel_file: None,
            sentinel_command: None,
        }
    );
    assert_eq!(
        settings.reboot,
        RebootSettings {
            method: RebootMethod::Logind,
            time_zone: "Europe/Berlin".into(),
            windows: vec![WindowSpec {
                days: vec![
                    Weekday::Monday,
                    Weekday::Tuesday,
                    Weekday::Wednesday,
                    Weekday::Thursday
                ],
                monthly: vec![],
                start: Time::new(22, 30, 0, 0).unwrap(),
                length: Duration::from_secs(3 * 3600),
            }],
            freezes: vec![],
            blockers: vec![command(
                &["/usr/local/bin/no-active-backups"],
                Duration::from_secs(30),
                false
            )],
            blocker_retry: Duration::from_secs(60),
            boot_id_path: "/proc/sys/kernel/random/boot_id".into(),
        }
    );
    assert_eq!(
        settings.hooks,
        HookSettings {
            before_reboot: vec![command(
                &["/usr/local/bin/stop-workload"],
                Duration::from_secs(120),
                true
            )],
            after_reboot: vec![command(
                &["/usr/local/bin/health-check"],
                Duration::from_secs(300),
                false
            )],
        }
    );
    assert_eq!(
        settings.kubernetes,
        Some(KubernetesSettings {
            kubeconfig: Some("/etc/kubernetes/kubelet.conf".into()),
            node_name: "worker-7".into(),
            drain_timeout: Duration::from_secs(15 * 60),
            grace_period: None,
            pod_selector: Some("app!=critical".into()),
            ready_timeout: Duration::from_secs(600),
            eviction_retry: Duration::from_secs(5),
            force_after: None,
            annotate_node: true,
            pre_reboot_labels: vec![],
            post_reboot_labels: vec![],
        })
    );
}

#[test]
fn every_new_key_can_be_set() {
    let text = with(
        "[updates]\nsource = \"sentinel\"\npoll_interval = \"1m\"\n\
         dbus_address = \"unix:path=/run/dbus/system_bus_socket\"\n\
         os_release = \"/usr/lib/os-release\"\nreboot_required = \"/run/reboot-required\"\n\
         unattended_upgrade = [\"/usr/bin/unattended-upgrade\", \"-v\"]\n\
         apt_conf_dir = \"/etc/apt/conf.d\"\nsentinel_command = [\"/bin/check\", \"\"]\n\
         [reboot]\nmethod = \"command\"\ncommand = [\"/usr/sbin/shutdown\", \"-r\", \"now\"]\n\
         time_zone = \"UTC\"\nblocker_retry = \"10s\"\nboot_id_path = \"/tmp/boot_id\"\n\
         window = [{ start = \"7:05\", length = \"168h\" }, \
                   { days = [\"sunday\", \"SAT\", \"Sun\"], start = \"00:00\", length = \"1m\" }]\n\
         [kubernetes]\nnode_name = \"k8s-n1\"\ngrace_period = \"45s\"\n\
         ready_timeout = \"20m\"\neviction_retry = \"1s\"\n",
    );
    let settings = load_one(&text).unwrap();
    let u = &settings.updates;
    assert_eq!(u.source, UpdateSourceKind::Sentinel);
    assert_eq!(u.poll_interval, Duration::from_secs(60));
    assert_eq!(
        u.dbus_address.as_deref(),
        Some("unix:path=/run/dbus/system_bus_socket")
    );
    assert_eq!(u.os_release, Path::new("/usr/lib/os-release"));
    assert_eq!(u.reboot_required, Path::new("/run/reboot-required"));
    assert_eq!(u.unattended_upgrade, ["/usr/bin/unattended-upgrade", "-v"]);
    assert_eq!(u.apt_conf_dir, Path::new("/etc/apt/conf.d"));
    // An explicit command means no default sentinel file.
    assert_eq!(u.sentinel_file, None);
    assert_eq!(
        u.sentinel_command,
        Some(vec!["/bin/check".to_owned(), String::new()])
    );
    let r = &settings.reboot;
    assert_eq!(
        r.method,
        RebootMethod::Command(vec!["/usr/sbin/shutdown".into(), "-r".into(), "now".into()])
    );
    assert_eq!(r.time_zone, "UTC");
    assert_eq!(r.blocker_retry, Duration::from_secs(10));
    assert_eq!(r.boot_id_path, Path::new("/tmp/boot_id"));
    assert_eq!(r.windows.len(), 2);
    assert_eq!(r.windows[0].days.len(), 7);
    assert_eq!(r.windows[0].days[0], Weekday::Monday);
    assert_eq!(r.windows[0].start, Time::new(7, 5, 0, 0).unwrap());
    assert_eq!(r.windows[0].length, Duration::from_secs(7 * 24 * 3600));
    // Any case, full names, duplicates dropped, Monday first.
    assert_eq!(r.windows[1].days, [Weekday::Saturday, Weekday::Sunday]);
    let k = settings.kubernetes.unwrap();
    assert_eq!(k.node_name, "k8s-n1");
    assert_eq!(k.kubeconfig, None);
    assert_eq!(k.grace_period, Some(Duration::from_secs(45)));
    assert_eq!(k.ready_timeout, Duration::from_secs(1200));
    assert_eq!(k.eviction_retry, Duration::from_secs(1));
    assert_eq!(k.drain_timeout, Duration::from_secs(600));
}

#[test]
fn sentinel_file_defaults_only_for_the_sentinel_source() {
    let settings = load_one(&with("[updates]\nsource = \"sentinel\"\n")).unwrap();
    assert_eq!(
        settings.updates.sentinel_file.as_deref(),
        Some(Path::new("/var/run/reboot-required"))
    );
    let settings = load_one(&with("[updates]\nsource = \"flatcar\"\n")).unwrap();
    assert_eq!(settings.updates.source, UpdateSourceKind::Flatcar);
    assert_eq!(settings.updates.sentinel_file, None);
    let settings = load_one(&with(
        "[updates]\nsource = \"sentinel\"\nsentinel_file = \"/run/need-reboot\"\n",
    ))
    .unwrap();
    assert_eq!(
        settings.updates.sentinel_file.as_deref(),
        Some(Path::new("/run/need-reboot"))
    );
}

#[test]
fn kubernetes_is_present_only_with_its_table() {
    assert_eq!(load_one(MINIMAL).unwrap().kubernetes, None);
    // An empty table enables it with every default, node name included.
    let k = load_one(&with("[kubernetes]\n"))
        .unwrap()
        .kubernetes
        .unwrap();
    assert_eq!(k.node_name, "n1");
    assert_eq!(k.kubeconfig, None);
    assert_eq!(k.drain_timeout, Duration::from_secs(600));
    assert_eq!(k.pod_selector, None);
    // A table from any fragment counts.
    let fragments = [
        frag("main.toml", MINIMAL),
        frag("50-k8s.toml", "[kubernetes]\n"),
        frag("60-other.toml", "[lease]\nwaiter_ttl = \"1m\"\n"),
    ];
    let settings = Settings::from_fragments(&fragments).unwrap();
    assert!(settings.kubernetes.is_some());
}

#[test]
fn kubernetes_node_name_must_be_valid() {
    assert_invalid_one(
        &with("[kubernetes]\nnode_name = \"a b\"\n"),
        "kubernetes.node_name",
        6,
    );
}

#[test]
fn unknown_keys_in_new_tables_and_entries() {
    for (text, key, line) in [
        ("[updates]\nsorce = \"apt\"\n", "updates.sorce", 6),
        ("[reboot]\n\nmethode = \"logind\"\n", "reboot.methode", 7),
        ("[reboot]\nwindows = []\n", "reboot.windows", 6),
        (
            "[[reboot.window]]\nstart = \"01:00\"\nlenght = \"1h\"\n",
            "reboot.window[0].lenght",
            7,
        ),
        (
            "[[reboot.blocker]]\ncommand = [\"a\"]\n[[reboot.blocker]]\ncmd = [\"b\"]\n",
            "reboot.blocker[1].cmd",
            8,
        ),
        ("[hooks]\nbefore = []\n", "hooks.before", 6),
        (
            "[[hooks.before_reboot]]\ncommand = [\"a\"]\ntimout = \"1s\"\n",
            "hooks.before_reboot[0].timout",
            7,
        ),
        (
            "[hooks]\nafter_reboot = [{ command = [\"a\"], retries = 3 }]\n",
            "hooks.after_reboot[0].retries",
            6,
        ),
        (
            "[kubernetes]\nkube_config = \"/x\"\n",
            "kubernetes.kube_config",
            6,
        ),
    ] {
        let message = assert_invalid_one(&with(text), key, line);
        assert!(message.starts_with("unknown key"), "{key}: {message}");
    }
}

#[test]
fn wrong_types_in_new_tables() {
    for (text, key, line) in [
        (
            "[[hooks.before_reboot]]\ncommand = [\"a\"]\nforce = \"yes\"\n",
            "hooks.before_reboot[0].force",
            7,
        ),
        (
            "[[reboot.window]]\ndays = \"Mon\"\n",
            "reboot.window[0].days",
            6,
        ),
        ("[reboot]\ncommand = \"reboot\"\n", "reboot.command", 6),
        (
            "[reboot]\nwindow = [\"Mon 02:00\"]\n",
            "reboot.window[0]",
            6,
        ),
        ("[hooks]\nbefore_reboot = 1\n", "hooks.before_reboot", 6),
    ] {
        let message = assert_invalid_one(&with(text), key, line);
        assert!(message.contains("invalid type"), "{key}: {message}");
    }
    let message = assert_invalid_one(&format!("kubernetes = true\n{MINIMAL}"), "kubernetes", 1);
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn update_source_must_be_known() {
    let message = assert_invalid_one(&with("[updates]\nsource = \"yum\"\n"), "updates.source", 6);
    assert!(message.contains("\"sentinel\""), "{message}");
    // Values are case-sensitive, like every other enumerated key.
    assert_invalid_one(&with("[updates]\nsource = \"Apt\"\n"), "updates.source", 6);
}

#[test]
fn sentinel_file_and_command_are_exclusive() {
    let text = with("[updates]\nsentinel_file = \"/run/x\"\nsentinel_command = [\"/bin/check\"]\n");
    let message = assert_invalid_one(&text, "updates.sentinel_command", 7);
    assert!(message.contains("baton.toml:6"), "{message}");
    // Across fragments, the later one is blamed and the other located.
    let fragments = [
        frag(
            "main.toml",
            &with("[updates]\nsentinel_command = [\"c\"]\n"),
        ),
        frag("50-file.toml", "[updates]\nsentinel_file = \"/run/x\"\n"),
    ];
    let message = assert_invalid(
        Settings::from_fragments(&fragments),
        "50-file.toml",
        "updates.sentinel_file",
        2,
    );
    assert!(message.contains("main.toml:6"), "{message}");
}

#[test]
fn reboot_method_must_be_known() {
    let message = assert_invalid_one(
        &with("[reboot]\nmethod = \"systemctl\"\n"),
        "reboot.method",
        6,
    );
    assert!(message.contains("\"logind\""), "{message}");
}

#[test]
fn method_command_needs_a_command() {
    let message = assert_invalid_one(
        &with("[reboot]\nmethod = \"command\"\n"),
        "reboot.method",
        6,
    );
    assert!(message.contains("reboot.command"), "{message}");
}

#[test]
fn command_is_only_for_method_command() {
    let message = assert_invalid_one(
        &with("[reboot]\ncommand = [\"/sbin/reboot\"]\n"),
        "reboot.command",
        6,
    );
    assert!(message.contains("the default"), "{message}");
    let message = assert_invalid_one(
        &with("[reboot]\nmethod = \"logind\"\n\ncommand = [\"/sbin/reboot\"]\n"),
        "reboot.command",
        8,
    );
    assert!(message.contains("baton.toml:6"), "{message}");
}

#[test]
fn command_arrays_must_not_be_empty() {
    let hooks = "[[hooks.before_reboot]]\ncommand = [\"a\"]\n\
                 [[hooks.before_reboot]]\ncommand = []\n";
    let message = assert_invalid_one(&with(hooks), "hooks.before_reboot[1].command", 8);
    assert!(message.contains("must not be empty"), "{message}");
    for (text, key, line) in [
        (
            "[reboot]\nmethod = \"command\"\ncommand = []\n",
            "reboot.command",
            7,
        ),
        (
            "[updates]\nsentinel_command = []\n",
            "updates.sentinel_command",
            6,
        ),
        (
            "[updates]\nunattended_upgrade = []\n",
            "updates.unattended_upgrade",
            6,
        ),
        (
            "[reboot]\nblocker = [{ command = [] }]\n",
            "reboot.blocker[0].command",
            6,
        ),
        (
            "[hooks]\nafter_reboot = [{ command = [\"\", \"x\"] }]\n",
            "hooks.after_reboot[0].command[0]",
            6,
        ),
        (
            "[updates]\nsentinel_command = [\"/bin/x\", \"a\\u0000b\"]\n",
            "updates.sentinel_command[1]",
            6,
        ),
    ] {
        assert_invalid_one(&with(text), key, line);
    }
}

#[test]
fn command_entries_need_a_command() {
    let text = with("[[reboot.blocker]]\ntimeout = \"1s\"\n");
    let message = assert_invalid_one(&text, "reboot.blocker[0].command", 5);
    assert!(message.contains("missing"), "{message}");
}

#[test]
fn force_is_only_for_before_reboot_hooks() {
    let text = with("[[reboot.blocker]]\ncommand = [\"a\"]\nforce = true\n");
    assert_invalid_one(&text, "reboot.blocker[0].force", 7);
    let text = with("[[hooks.after_reboot]]\ncommand = [\"a\"]\nforce = false\n");
    assert_invalid_one(&text, "hooks.after_reboot[0].force", 7);
}

fn with_window(body: &str) -> String {
    with(&format!("[[reboot.window]]\n{body}"))
}

#[test]
fn window_start_must_be_hh_mm() {
    for bad in [
        "25:00", "24:00", "2am", "12:60", "1:5", "", "12:00:00", "123:00", "-1:00", "+1:00",
        " 1:00", "22.30",
    ] {
        let text = with_window(&format!("start = \"{bad}\"\nlength = \"1h\"\n"));
        let message = assert_invalid_one(&text, "reboot.window[0].start", 6);
        assert!(message.contains("HH:MM"), "{bad}: {message}");
    }
    for (good, hour, minute) in [("00:00", 0, 0), ("23:59", 23, 59), ("7:05", 7, 5)] {
        assert_eq!(
            parse_time_of_day(good),
            Ok(Time::new(hour, minute, 0, 0).unwrap()),
            "{good}"
        );
    }
}

#[test]
fn window_days_must_be_known() {
    let text = with_window("days = [\"Mon\", \"Funday\"]\nstart = \"01:00\"\nlength = \"1h\"\n");
    let message = assert_invalid_one(&text, "reboot.window[0].days[1]", 6);
    assert!(message.contains("\"Funday\""), "{message}");
    for bad in ["M", "tues", "Mo", ""] {
        assert_eq!(parse_weekday(bad), None, "{bad}");
    }
    let text = with_window("days = []\nstart = \"01:00\"\nlength = \"1h\"\n");
    assert_invalid_one(&text, "reboot.window[0].days", 6);
}

#[test]
fn window_length_must_be_positive_and_at_most_a_week() {
    for (bad, why) in [
        ("0s", "greater than zero"),
        ("168h1s", "longer than a week"),
        ("200h", "longer than a week"),
        ("1d", "invalid duration"),
    ] {
        let text = with_window(&format!("start = \"01:00\"\nlength = \"{bad}\"\n"));
        let message = assert_invalid_one(&text, "reboot.window[0].length", 7);
        assert!(message.contains(why), "{bad}: {message}");
    }
}

#[test]
fn window_start_and_length_are_required() {
    let text = with(
        "[[reboot.window]]\nstart = \"01:00\"\nlength = \"1h\"\n[[reboot.window]]\nlength = \"1h\"\n",
    );
    assert_invalid_one(&text, "reboot.window[1].start", 8);
    let text = with("[reboot]\nwindow = [{ start = \"01:00\" }]\n");
    assert_invalid_one(&text, "reboot.window[0].length", 6);
}

#[test]
fn time_zone_must_be_known() {
    for bad in ["Mars/Olympus_Mons", "", "Europe/berlin-ish", "local"] {
        let text = with(&format!("[reboot]\ntime_zone = \"{bad}\"\n"));
        let message = assert_invalid_one(&text, "reboot.time_zone", 6);
        assert!(message.contains("unknown time zone"), "{bad}: {message}");
    }
    for good in ["localtime", "UTC", "America/New_York"] {
        let text = with(&format!("[reboot]\ntime_zone = \"{good}\"\n"));
        assert_eq!(load_one(&text).unwrap().reboot.time_zone, good);
    }
}

#[test]
fn new_durations_must_parse_and_be_positive() {
    for (table, key) in [
        ("updates", "check_interval"),
        ("updates", "poll_interval"),
        ("updates", "report_interval"),
        ("reboot", "blocker_retry"),
        ("kubernetes", "drain_timeout"),
        ("kubernetes", "grace_period"),
        ("kubernetes", "ready_timeout"),
        ("kubernetes", "eviction_retry"),
    ] {
        for (bad, why) in [("0s", "greater than zero"), ("later", "invalid duration")] {
            let text = with(&format!("[{table}]\n{key} = \"{bad}\"\n"));
            let message = assert_invalid_one(&text, &format!("{table}.{key}"), 6);
            assert!(message.contains(why), "{table}.{key} = {bad}: {message}");
        }
    }
    for entry in [
        "[[reboot.blocker]]",
        "[[hooks.before_reboot]]",
        "[[hooks.after_reboot]]",
    ] {
        let key = format!("{}[0].timeout", entry.trim_matches(['[', ']']));
        for bad in ["0ms", "5 mins please"] {
            let text = with(&format!(
                "{entry}\ncommand = [\"a\"]\ntimeout = \"{bad}\"\n"
            ));
            assert_invalid_one(&text, &key, 7);
        }
    }
}

#[test]
fn pod_selector_must_not_be_empty() {
    for bad in ["", "  "] {
        let text = with(&format!("[kubernetes]\npod_selector = \"{bad}\"\n"));
        assert_invalid_one(&text, "kubernetes.pod_selector", 6);
    }
}

#[test]
fn new_paths_must_be_absolute() {
    for (table, key) in [
        ("updates", "os_release"),
        ("updates", "reboot_required"),
        ("updates", "apt_conf_dir"),
        ("updates", "sentinel_file"),
        ("reboot", "boot_id_path"),
        ("kubernetes", "kubeconfig"),
    ] {
        for bad in ["relative/path", ""] {
            let text = with(&format!("[{table}]\n{key} = \"{bad}\"\n"));
            let message = assert_invalid_one(&text, &format!("{table}.{key}"), 6);
            assert!(message.contains("absolute"), "{table}.{key}: {message}");
        }
    }
}

#[test]
fn dbus_address_must_look_like_one() {
    let text = with("[updates]\ndbus_address = \"/run/dbus/system_bus_socket\"\n");
    assert_invalid_one(&text, "updates.dbus_address", 6);
}

#[test]
fn arrays_of_tables_replace_earlier_fragments() {
    let vendor = with(
        "[reboot]\ntime_zone = \"UTC\"\n\
         [[reboot.window]]\nstart = \"01:00\"\nlength = \"1h\"\n\
         [[reboot.window]]\nstart = \"02:00\"\nlength = \"1h\"\n\
         [[reboot.blocker]]\ncommand = [\"vendor-blocker\"]\n\
         [[hooks.before_reboot]]\ncommand = [\"vendor-before\"]\n\
         [[hooks.after_reboot]]\ncommand = [\"vendor-after\"]\n",
    );
    let local = "[[reboot.window]]\nstart = \"03:00\"\nlength = \"2h\"\n\
                 [[hooks.before_reboot]]\ncommand = [\"local-before\"]\n";
    let fragments = [frag("vendor.toml", &vendor), frag("local.toml", local)];
    let settings = Settings::from_fragments(&fragments).unwrap();
    let r = &settings.reboot;
    // Replaced, not appended.
    assert_eq!(r.windows.len(), 1);
    assert_eq!(r.windows[0].start, Time::new(3, 0, 0, 0).unwrap());
    // Keys the later fragment does not set survive: tables still merge.
    assert_eq!(r.time_zone, "UTC");
    assert_eq!(r.blockers[0].command, ["vendor-blocker"]);
    assert_eq!(settings.hooks.before_reboot.len(), 1);
    assert_eq!(settings.hooks.before_reboot[0].command, ["local-before"]);
    assert_eq!(settings.hooks.after_reboot[0].command, ["vendor-after"]);

    // An empty array clears the earlier one.
    let fragments = [
        frag("vendor.toml", &vendor),
        frag("local.toml", "[reboot]\nwindow = []\nblocker = []\n"),
    ];
    let settings = Settings::from_fragments(&fragments).unwrap();
    assert!(settings.reboot.windows.is_empty());
    assert!(settings.reboot.blockers.is_empty());
    assert_eq!(settings.hooks.before_reboot.len(), 1);

    // Errors in a replaced array are not reported; in the new one they
    // name the later fragment.
    let bad_vendor = with("[[reboot.window]]\nstart = \"99:00\"\nlength = \"1h\"\n");
    let fragments = [frag("vendor.toml", &bad_vendor), frag("local.toml", local)];
    assert!(Settings::from_fragments(&fragments).is_ok());
    let fragments = [
        frag("vendor.toml", &vendor),
        frag(
            "local.toml",
            "[[reboot.window]]\nstart = \"3pm\"\nlength = \"1h\"\n",
        ),
    ];
    assert_invalid(
        Settings::from_fragments(&fragments),
        "local.toml",
        "reboot.window[0].start",
        2,
    );
}

#[test]
fn new_tables_merge_key_by_key() {
    let fragments = [
        frag(
            "vendor.toml",
            &with("[updates]\nsource = \"apt\"\n[kubernetes]\ndrain_timeout = \"5m\"\n"),
        ),
        frag(
            "local.toml",
            "[updates]\ncheck_interval = \"1h\"\n[kubernetes]\npod_selector = \"a=b\"\n",
        ),
    ];
    let settings = Settings::from_fragments(&fragments).unwrap();
    assert_eq!(settings.updates.source, UpdateSourceKind::Apt);
    assert_eq!(
        settings.updates.check_interval,
        Some(Duration::from_secs(3600))
    );
    let k = settings.kubernetes.unwrap();
    assert_eq!(k.drain_timeout, Duration::from_secs(300));
    assert_eq!(k.pod_selector.as_deref(), Some("a=b"));
}

// --- files (through `load`) ----------------------------------------------

struct Tree {
    _dir: tempfile::TempDir,
    main: PathBuf,
    local: PathBuf,
    vendor: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/baton");
    Tree {
        main: etc.join("baton.toml"),
        local: etc.join("baton.d"),
        vendor: dir.path().join("usr/lib/baton/baton.d"),
        _dir: dir,
    }
}

#[test]
fn load_reads_main_file_without_drop_in_dirs() {
    let t = tree();
    write(&t.main, EXAMPLE);
    let settings = Settings::load(&t.main, &t.vendor).unwrap();
    assert_eq!(settings.node.name, "cp-1");
    assert_eq!(settings.sources, vec![t.main.clone()]);
}

#[test]
fn drop_in_overrides_main() {
    let t = tree();
    write(&t.main, EXAMPLE);
    write(
        &t.local.join("50-ttl.toml"),
        "[lease]\nwaiter_ttl = \"45s\"\n",
    );
    let settings = Settings::load(&t.main, &t.vendor).unwrap();
    assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(45));
    // Untouched keys of the same table survive.
    assert_eq!(settings.lease.default_max_holders, 1);
}

#[test]
fn main_overrides_vendor_and_order_is_vendor_main_local() {
    let t = tree();
    write(
        &t.vendor.join("10-defaults.toml"),
        "[lease]\nwaiter_ttl = \"1m\"\ndefault_max_holders = 4\n",
    );
    write(&t.main, &format!("{MINIMAL}[lease]\nwaiter_ttl = \"2m\"\n"));
    write(
        &t.local.join("20-local.toml"),
        "[node]\ngroup = \"canary\"\n",
    );
    let settings = Settings::load(&t.main, &t.vendor).unwrap();
    assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(120));
    assert_eq!(settings.lease.default_max_holders, 4);
    assert_eq!(settings.node.group, "canary");
    assert_eq!(
        settings.sources,
        vec![
            t.vendor.join("10-defaults.toml"),
            t.main.clone(),
            t.local.join("20-local.toml")
        ]
    );
}

#[test]
fn drop_ins_apply_in_name_order() {
    let t = tree();
    write(&t.main, MINIMAL);
    write(
        &t.local.join("20-b.toml"),
        "[lease]\nwaiter_ttl = \"20s\"\n",
    );
    write(
        &t.local.join("10-a.toml"),
        "[lease]\nwaiter_ttl = \"10s\"\n",
    );
    write(&t.local.join("30-c.toml"), "[node]\ngroup = \"c\"\n");
    // Not drop-ins: wrong extension, hidden, a directory.
    write(&t.local.join("99-z.toml.bak"), "garbage =");
    write(&t.local.join(".99-z.toml"), "garbage =");
    std::fs::create_dir_all(t.local.join("98-dir.toml")).unwrap();
    let settings = Settings::load(&t.main, &t.vendor).unwrap();
    assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(20));
    assert_eq!(
        settings.sources,
        vec![
            t.main.clone(),
            t.local.join("10-a.toml"),
            t.local.join("20-b.toml"),
            t.local.join("30-c.toml"),
        ]
    );
}

#[test]
fn local_drop_in_masks_same_named_vendor_drop_in() {
    let t = tree();
    write(
        &t.vendor.join("10-x.toml"),
        "[lease]\ndefault_max_holders = 9\n",
    );
    write(
        &t.vendor.join("20-y.toml"),
        "[lease]\nwaiter_ttl = \"9s\"\n",
    );
    write(&t.main, MINIMAL);
    write(&t.local.join("10-x.toml"), "");
    let settings = Settings::load(&t.main, &t.vendor).unwrap();
    assert_eq!(settings.lease.default_max_holders, 1);
    assert_eq!(settings.lease.waiter_ttl, Duration::from_secs(9));
    assert_eq!(
        settings.sources,
        vec![
            t.vendor.join("20-y.toml"),
            t.main.clone(),
            t.local.join("10-x.toml")
        ]
    );
}

#[test]
fn dev_null_symlink_masks_vendor_drop_in() {
    let t = tree();
    write(
        &t.vendor.join("10-x.toml"),
        "[lease]\ndefault_max_holders = 9\n",
    );
    write(&t.main, MINIMAL);
    std::fs::create_dir_all(&t.local).unwrap();
    std::os::unix::fs::symlink("/dev/null", t.local.join("10-x.toml")).unwrap();
    let settings = Settings::load(&t.main, &t.vendor).unwrap();
    assert_eq!(settings.lease.default_max_holders, 1);
    assert_eq!(
        settings.sources,
        vec![t.main.clone(), t.local.join("10-x.toml")]
    );
}

#[test]
fn errors_in_drop_ins_name_the_drop_in() {
    let t = tree();
    write(&t.main, MINIMAL);
    let drop_in = t.local.join("50-bad.toml");
    write(&drop_in, "# comment\n[lease]\ndefault_max_holders = 0\n");
    let result = Settings::load(&t.main, &t.vendor);
    assert_invalid(
        result,
        drop_in.to_str().unwrap(),
        "lease.default_max_holders",
        3,
    );

    write(&drop_in, "[lease]\nwaiter_tll = \"1s\"\n");
    let result = Settings::load(&t.main, &t.vendor);
    assert_invalid(result, drop_in.to_str().unwrap(), "lease.waiter_tll", 2);

    write(&drop_in, "[lease\n");
    let err = Settings::load(&t.main, &t.vendor).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Syntax { file, line: 1, .. } if *file == drop_in),
        "{err:?}"
    );

    let vendor_file = t.vendor.join("10-vendor.toml");
    std::fs::remove_file(&drop_in).unwrap();
    write(&vendor_file, "\n[cluster]\nlisten = \"nope\"\n");
    write(&t.main, "[node]\nname = \"n1\"\n");
    let result = Settings::load(&t.main, &t.vendor);
    assert_invalid(result, vendor_file.to_str().unwrap(), "cluster.listen", 3);
}

#[test]
fn missing_main_file_is_an_error_naming_it() {
    let t = tree();
    let err = Settings::load(&t.main, &t.vendor).unwrap_err();
    match &err {
        ConfigError::Read { path, source } => {
            assert_eq!(path, &t.main);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Read error, got {other:?}"),
    }
    assert!(err.to_string().contains(t.main.to_str().unwrap()), "{err}");
}

#[test]
fn missing_main_file_is_allowed_with_drop_ins() {
    let t = tree();
    write(&t.vendor.join("10-base.toml"), MINIMAL);
    let settings = Settings::load(&t.main, &t.vendor).unwrap();
    assert_eq!(settings.sources, vec![t.vendor.join("10-base.toml")]);

    let t = tree();
    write(&t.local.join("10-base.toml"), MINIMAL);
    let settings = Settings::load(&t.main, &t.vendor).unwrap();
    assert_eq!(settings.sources, vec![t.local.join("10-base.toml")]);
}

#[test]
fn unreadable_main_file_is_an_error_even_with_drop_ins() {
    let t = tree();
    write(&t.local.join("10-base.toml"), MINIMAL);
    // A directory where the file should be: not NotFound, so not skipped.
    std::fs::create_dir_all(&t.main).unwrap();
    let err = Settings::load(&t.main, &t.vendor).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Read { path, .. } if *path == t.main),
        "{err:?}"
    );
}

#[test]
fn line_of_counts_newlines_before_offset() {
    assert_eq!(line_of("a\nb\nc", 0), 1);
    assert_eq!(line_of("a\nb\nc", 2), 2);
    assert_eq!(line_of("a\nb\nc", 4), 3);
    assert_eq!(line_of("a\n", 99), 2);
}

// --- [metrics] ---------------------------------------------------------------

#[test]
fn metrics_are_off_unless_listen_is_set() {
    assert_eq!(load_one(MINIMAL).unwrap().metrics, None);
    let text = format!("{MINIMAL}[metrics]\nallow_remote = true\n");
    assert_eq!(load_one(&text).unwrap().metrics, None);
}

#[test]
fn metrics_listen_on_loopback() {
    for listen in ["127.0.0.1:9464", "[::1]:9464"] {
        let text = format!("{MINIMAL}[metrics]\nlisten = \"{listen}\"\n");
        let metrics = load_one(&text).unwrap().metrics.unwrap();
        assert_eq!(metrics.listen, listen.parse().unwrap());
    }
}

#[test]
fn metrics_on_a_remote_address_need_allow_remote() {
    // MINIMAL has 4 lines; [metrics] is line 5, listen line 6.
    let text = format!("{MINIMAL}[metrics]\nlisten = \"0.0.0.0:9464\"\n");
    let message = assert_invalid_one(&text, "metrics.listen", 6);
    assert!(message.contains("not a loopback address"), "{message}");
    assert!(message.contains("allow_remote = true"), "{message}");
    // In a drop-in, the error names the drop-in.
    let result = Settings::from_fragments(&[
        frag("/etc/baton/baton.toml", MINIMAL),
        frag(
            "/etc/baton/baton.d/metrics.toml",
            "[metrics]\nlisten = \"10.0.0.5:9464\"\n",
        ),
    ]);
    assert_invalid(
        result,
        "/etc/baton/baton.d/metrics.toml",
        "metrics.listen",
        2,
    );
    let text = format!("{MINIMAL}[metrics]\nlisten = \"10.0.0.5:9464\"\nallow_remote = true\n");
    let metrics = load_one(&text).unwrap().metrics.unwrap();
    assert_eq!(metrics.listen, "10.0.0.5:9464".parse().unwrap());
}

#[test]
fn metrics_listen_must_be_an_address_and_port() {
    let text = format!("{MINIMAL}[metrics]\nlisten = \"localhost\"\n");
    let message = assert_invalid_one(&text, "metrics.listen", 6);
    assert!(message.contains("ADDR:PORT"), "{message}");
    let text = format!("{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9464\"\nport = 1\n");
    assert_invalid_one(&text, "metrics.port", 7);
}

// --- monthly window days and freeze periods ---------------------------------

#[test]
fn window_days_take_monthly_patterns() {
    let text = with_window(
        "days = [\"Mon\", \"2nd Sat\", \"last sun\", \"second Saturday\", \"1st Sun\"]\n\
         start = \"23:00\"\nlength = \"3h\"\n",
    );
    let settings = load_one(&text).unwrap();
    let w = &settings.reboot.windows[0];
    assert_eq!(w.days, [Weekday::Monday]);
    let monthly: Vec<String> = w.monthly.iter().map(|m| m.describe()).collect();
    assert_eq!(
        monthly,
        ["1st Sun", "2nd Sat", "last Sun"],
        "sorted, no duplicates"
    );
    // Only monthly patterns: no weekly days (not every day).
    let text = with_window("days = [\"last Sun\"]\nstart = \"23:00\"\nlength = \"3h\"\n");
    let settings = load_one(&text).unwrap();
    assert!(settings.reboot.windows[0].days.is_empty());
    assert_eq!(settings.reboot.windows[0].monthly.len(), 1);
}

#[test]
fn window_days_refuse_bad_monthly_patterns() {
    for (bad, why) in [
        ("6th sat", "unknown ordinal \"6th\""),
        ("5th Sun", "there is no 5th"),
        ("2nd funday", "unknown day \"funday\""),
        ("last", "unknown day \"last\""),
        ("2nd Sat Sun", "unknown day"),
    ] {
        let text = with_window(&format!(
            "days = [\"Mon\", \"{bad}\"]\nstart = \"01:00\"\nlength = \"1h\"\n"
        ));
        let message = assert_invalid_one(&text, "reboot.window[0].days[1]", 6);
        assert!(message.contains(why), "{bad}: {message}");
    }
}

fn with_freeze(body: &str) -> String {
    with(&format!(
        "[reboot]\ntime_zone = \"Europe/Berlin\"\n[[reboot.freeze]]\n{body}"
    ))
}

#[test]
fn freezes_parse_dates_and_date_times() {
    let text = with(
        "[[reboot.freeze]]\nfrom = \"2026-12-20\"\nto = \"2027-01-03\"\nreason = \"Christmas\"\n\
         [reboot]\nfreeze = []\n",
    );
    // `freeze = []` after the entries is a TOML error (the key is defined twice); keep
    // entries only.
    assert!(load_one(&text).is_err());
    let text = with_freeze(
        "from = \"2026-12-20\"\nto = \"2027-01-03\"\nreason = \"Christmas\"\n\
         [[reboot.freeze]]\nfrom = \"2027-03-01T06:00\"\nto = \"2027-03-01 18:30\"\n",
    );
    let settings = load_one(&text).unwrap();
    let f = &settings.reboot.freezes;
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].from, jiff::civil::date(2026, 12, 20).at(0, 0, 0, 0));
    assert_eq!(
        f[0].until,
        jiff::civil::date(2027, 1, 4).at(0, 0, 0, 0),
        "a `to` date is frozen all day"
    );
    assert_eq!(f[0].reason.as_deref(), Some("Christmas"));
    assert_eq!(f[1].from, jiff::civil::date(2027, 3, 1).at(6, 0, 0, 0));
    assert_eq!(f[1].until, jiff::civil::date(2027, 3, 1).at(18, 30, 0, 0));
    assert_eq!(f[1].reason, None);
    // A drop-in's freezes replace the vendor's; `freeze = []` clears them.
    let fragments = [
        frag("vendor.toml", &text),
        frag("local.toml", "[reboot]\nfreeze = []\n"),
    ];
    assert!(Settings::from_fragments(&fragments)
        .unwrap()
        .reboot
        .freezes
        .is_empty());
}

#[test]
fn freezes_refuse_inverted_and_bad_ranges() {
    // Lines: 5 [reboot], 6 time_zone, 7 [[reboot.freeze]], 8 from, 9 to, 10 reason.
    for (body, key, line, why) in [
        (
            "from = \"2027-01-03\"\nto = \"2026-12-20\"\n",
            "reboot.freeze[0].to",
            9,
            "ends before it starts",
        ),
        (
            "from = \"2027-01-03T06:00\"\nto = \"2027-01-03T06:00\"\n",
            "reboot.freeze[0].to",
            9,
            "ends before it starts",
        ),
        (
            "from = \"2026-01-01\"\nto = \"2027-06-01\"\n",
            "reboot.freeze[0].to",
            9,
            "longer than 366 days",
        ),
        (
            "from = \"2026-02-30\"\nto = \"2026-03-01\"\n",
            "reboot.freeze[0].from",
            8,
            "no such date",
        ),
        (
            "from = \"2026-12-20\"\nto = \"3026-01-03\"\n",
            "reboot.freeze[0].to",
            9,
            "out of range",
        ),
        (
            "from = \"20.12.2026\"\nto = \"2027-01-03\"\n",
            "reboot.freeze[0].from",
            8,
            "YYYY-MM-DD",
        ),
        (
            "from = \"2026-12-20T00:00Z\"\nto = \"2027-01-03\"\n",
            "reboot.freeze[0].from",
            8,
            "no offset",
        ),
        (
            "from = \"2026-12-20\"\nto = \"2027-01-03\"\nreason = \"bad\\u001b[31m\"\n",
            "reboot.freeze[0].reason",
            10,
            "control",
        ),
        (
            "from = \"2026-12-20\"\n",
            "reboot.freeze[0].to",
            7,
            "missing",
        ),
        (
            "to = \"2026-12-20\"\n",
            "reboot.freeze[0].from",
            7,
            "missing",
        ),
        (
            "from = \"2026-12-20\"\nto = \"2027-01-03\"\nwhy = \"x\"\n",
            "reboot.freeze[0].why",
            10,
            "unknown key",
        ),
    ] {
        let message = assert_invalid_one(&with_freeze(body), key, line);
        assert!(message.contains(why), "{body}: {message}");
    }
    let long = "r".repeat(257);
    let text = with_freeze(&format!(
        "from = \"2026-12-20\"\nto = \"2027-01-03\"\nreason = \"{long}\"\n"
    ));
    let message = assert_invalid_one(&text, "reboot.freeze[0].reason", 10);
    assert!(message.contains("at most 256"), "{message}");
}

#[test]
fn at_most_64_freezes() {
    let entry = "[[reboot.freeze]]\nfrom = \"2026-12-20\"\nto = \"2026-12-21\"\n";
    let text = with(&entry.repeat(64));
    assert_eq!(load_one(&text).unwrap().reboot.freezes.len(), 64);
    let text = with(&entry.repeat(65));
    let message = assert_invalid_one(&text, "reboot.freeze", 5);
    assert!(message.contains("at most 64"), "{message}");
}

// --- [fleetlock] -------------------------------------------------------------

/// EXAMPLE (a voter, cp-1) with `section` after it; `line(n)` is the line
/// number of the section's n-th line (1-based).
fn with_fleetlock(section: &str) -> (String, impl Fn(usize) -> usize) {
    let base = EXAMPLE.lines().count();
    (format!("{EXAMPLE}{section}"), move |n| base + n)
}

#[test]
fn fleetlock_is_off_unless_listen_is_set_and_takes_its_defaults() {
    assert_eq!(load_one(EXAMPLE).unwrap().fleetlock, None);
    let (text, _) = with_fleetlock("[fleetlock]\ngroups = [\"default\"]\n");
    assert_eq!(load_one(&text).unwrap().fleetlock, None);
    let (text, _) = with_fleetlock(
        "[fleetlock]\nlisten = \"0.0.0.0:7423\"\ngroups = [\"default\", \"workers\"]\n\
         allow_networks = [\"10.0.0.0/16\", \"fd00::/8\", \"192.168.1.7\"]\n",
    );
    let fleetlock = load_one(&text).unwrap().fleetlock.unwrap();
    assert_eq!(fleetlock.listen, "0.0.0.0:7423".parse().unwrap());
    assert_eq!(fleetlock.groups, vec!["default", "workers"]);
    let networks: Vec<String> = fleetlock
        .allow_networks
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(networks, ["10.0.0.0/16", "fd00::/8", "192.168.1.7/32"]);
    assert_eq!(fleetlock.poll_ttl, Duration::from_secs(15 * 60));
    let (text, _) = with_fleetlock(
        "[fleetlock]\nlisten = \"127.0.0.1:7423\"\ngroups = [\"default\"]\npoll_ttl = \"20m\"\n",
    );
    let fleetlock = load_one(&text).unwrap().fleetlock.unwrap();
    assert_eq!(fleetlock.poll_ttl, Duration::from_secs(20 * 60));
    assert!(fleetlock.allow_networks.is_empty());
}

#[test]
fn fleetlock_errors_name_the_key_and_line() {
    // listen without groups: the error points at listen and names groups.
    let (text, line) = with_fleetlock("[fleetlock]\nlisten = \"0.0.0.0:7423\"\n");
    let message = assert_invalid_one(&text, "fleetlock.groups", line(2));
    assert!(message.contains("required"), "{message}");
    let (text, line) = with_fleetlock("[fleetlock]\nlisten = \"0.0.0.0:7423\"\ngroups = []\n");
    assert_invalid_one(&text, "fleetlock.groups", line(3));
    // A group name the lease rules refuse, at its own line.
    let (text, line) = with_fleetlock(
        "[fleetlock]\nlisten = \"0.0.0.0:7423\"\ngroups = [\n  \"default\",\n  \"a b\",\n]\n",
    );
    let message = assert_invalid_one(&text, "fleetlock.groups[1]", line(5));
    assert!(message.contains("\"a b\""), "{message}");
    let (text, line) = with_fleetlock(
        "[fleetlock]\nlisten = \"0.0.0.0:7423\"\ngroups = [\"default\"]\n\
         allow_networks = [\"10.0.0.1/8\"]\n",
    );
    let message = assert_invalid_one(&text, "fleetlock.allow_networks[0]", line(4));
    assert!(message.contains("10.0.0.0/8"), "{message}");
    let (text, line) = with_fleetlock("[fleetlock]\nlisten = \"7423\"\ngroups = [\"default\"]\n");
    let message = assert_invalid_one(&text, "fleetlock.listen", line(2));
    assert!(message.contains("ADDR:PORT"), "{message}");
    let (text, line) = with_fleetlock(
        "[fleetlock]\nlisten = \"0.0.0.0:7423\"\ngroups = [\"default\"]\npoll_ttl = \"0s\"\n",
    );
    assert_invalid_one(&text, "fleetlock.poll_ttl", line(4));
    let (text, line) = with_fleetlock(
        "[fleetlock]\nlisten = \"0.0.0.0:7423\"\ngroups = [\"default\"]\nport = 1\n",
    );
    assert_invalid_one(&text, "fleetlock.port", line(4));
    // Only a voter serves FleetLock; in a drop-in, the drop-in is named.
    let result = Settings::from_fragments(&[
        frag("/etc/baton/baton.toml", MINIMAL),
        frag(
            "/etc/baton/baton.d/fleetlock.toml",
            "[fleetlock]\nlisten = \"0.0.0.0:7423\"\ngroups = [\"default\"]\n",
        ),
    ]);
    let message = assert_invalid(
        result,
        "/etc/baton/baton.d/fleetlock.toml",
        "fleetlock.listen",
        2,
    );
    assert!(message.contains("only a voter"), "{message}");
}

#[test]
fn report_interval_is_one_second_to_one_hour() {
    for bad in ["500ms", "2h"] {
        let text = with(&format!("[updates]\nreport_interval = \"{bad}\"\n"));
        let message = assert_invalid_one(&text, "updates.report_interval", 6);
        assert!(message.contains("1s to 1h"), "{bad}: {message}");
    }
    let text = with("[updates]\nreport_interval = \"2s\"\n");
    assert_eq!(
        load_one(&text).unwrap().updates.report_interval,
        Duration::from_secs(2)
    );
}

#[test]
fn freezes_take_bare_toml_dates_too() {
    let text = with_freeze("from = 2026-12-20\nto = 2027-01-03T06:30:00\n");
    let f = &load_one(&text).unwrap().reboot.freezes[0];
    assert_eq!(f.from, jiff::civil::date(2026, 12, 20).at(0, 0, 0, 0));
    assert_eq!(f.until, jiff::civil::date(2027, 1, 3).at(6, 30, 0, 0));
    for (body, key, line, why) in [
        (
            "from = 2026-12-20T06:00:00Z\nto = 2027-01-03\n",
            "reboot.freeze[0].from",
            8,
            "no offset",
        ),
        (
            "from = 06:00:00\nto = 2027-01-03\n",
            "reboot.freeze[0].from",
            8,
            "YYYY-MM-DD",
        ),
        (
            "from = 20261220\nto = 2027-01-03\n",
            "reboot.freeze[0].from",
            8,
            "a date such as",
        ),
    ] {
        let message = assert_invalid_one(&with_freeze(body), key, line);
        assert!(message.contains(why), "{body}: {message}");
    }
}
