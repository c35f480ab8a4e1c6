//! FleetLock on real voters, driven by a client written from Zincati's protocol document: raw HTTP/1.1, literal JSON.
//!
//! The protocol (coreos/zincati docs/development/fleetlock/protocol.md):
//! `POST {base}/v1/pre-reboot` and `POST {base}/v1/steady-state`, header
//! `fleet-lock-protocol: true`, body `{"client_params":{"id":..,"group":..}}`,
//! 200 for success, errors as `{"kind":..,"value":..}`. Nothing here uses
//! baton's own types for the protocol.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use baton::Role;
use serde_json::Value;

use crate::http_client::{status_and_body, Client};
use crate::support::TestCluster;

/// Zincati's ids: app-specific machine ids, 32 hex digits.
const A: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const B: &str = "1b2c3d4e5f60718293a4b5c6d7e8f90a";
const C: &str = "2c3d4e5f60718293a4b5c6d7e8f90a1b";
const D: &str = "3d4e5f60718293a4b5c6d7e8f90a1b2c";
const E: &str = "4e5f60718293a4b5c6d7e8f90a1b2c3d";

/// A FleetLock base URL: where, and how (TLS trusting the cluster CA, no
/// client certificate, as Zincati connects; or plaintext).
struct Base {
    client: Client,
    address: SocketAddr,
}

fn body(id: &str, group: &str) -> String {
    format!(r#"{{"client_params":{{"id":"{id}","group":"{group}"}}}}"#)
}

/// A POST with the protocol header and `body`, as Zincati sends it.
fn request(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: fleetlock\r\nfleet-lock-protocol: true\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl Base {
    fn raw(&self, request: &str) -> std::io::Result<String> {
        self.client.exchange(self.address, request.as_bytes())
    }

    /// The status and the JSON body of one exchange.
    fn send(&self, request: &str) -> (u16, Value) {
        let answer = self.raw(request).expect("FleetLock exchange");
        let (status, body) = status_and_body(&answer);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        (status, json)
    }

    fn pre_reboot(&self, id: &str, group: &str) -> (u16, Value) {
        self.send(&request("/v1/pre-reboot", &body(id, group)))
    }

    fn steady_state(&self, id: &str, group: &str) -> (u16, Value) {
        self.send(&request("/v1/steady-state", &body(id, group)))
    }

    /// Polls pre-reboot (as Zincati does, faster) until it answers 200.
    fn pre_reboot_until_ok(&self, id: &str, group: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (status, json) = self.pre_reboot(id, group);
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never got the slot: {status} {json}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the listener answers.
    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .raw(&request("/v1/steady-state", &body(A, "none")))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "FleetLock at {} never answered",
                self.address
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn kind(json: &Value) -> &str {
    json["kind"].as_str().unwrap_or_default()
}

fn value(json: &Value) -> &str {
    json["value"].as_str().unwrap_or_default()
}

/// The FleetLock drop-in of voter `port`: groups default and workers,
/// short TTLs so that a silent client leaves within seconds.
fn drop_in(listen: &str, extra: &str) -> String {
    format!(
        "[fleetlock]\nlisten = \"{listen}\"\ngroups = [\"default\", \"workers\"]\npoll_ttl = \"2s\"\n{extra}\
         [lease]\nwaiter_ttl = \"2s\"\n"
    )
}

fn queue(cluster: &TestCluster, group: &str) -> Vec<String> {
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    status["groups"][group]["queue"]
        .as_array()
        .map(|q| {
            q.iter()
                .map(|w| w["holder"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn zincati_clients_roll_one_at_a_time_in_fifo_order_and_a_silent_one_leaves() {
    let ports: Vec<u16> = (0..3)
        .map(|_| baton::free_port().expect("free port"))
        .collect();
    let cluster = TestCluster::start_with_drop_ins(3, "", &|i| {
        Some(drop_in(&format!("127.0.0.1:{}", ports[i]), ""))
    });
    cluster.wait_for_leader(Duration::from_secs(10));
    let ca = cluster
        .layout
        .client_identity("zincati-test", Role::Host)
        .expect("certificate")
        .expect("a TLS cluster")
        .ca;
    // Zincati trusts the cluster CA (added to the host's trust store) and
    // shows no client certificate.
    let client = Client::tls(&ca, None);
    let voter: Vec<Base> = ports
        .iter()
        .map(|&port| Base {
            client: client.clone(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        })
        .collect();
    for base in &voter {
        base.wait_up();
    }
    let g = "default";

    // Zincati's initialization: steady-state while holding nothing is OK.
    let (status, json) = voter[0].steady_state(A, g);
    assert_eq!(status, 200, "{json}");
    // The protocol document's own example, with curl (OpenSSL) trusting the
    // cluster CA: the voter's certificate and the endpoint work for it too.
    curl_steady_state(&ca, ports[2], A, g);

    // A takes the only slot (max_holders 1), through any voter.
    let (status, json) = voter[1].pre_reboot(A, g);
    assert_eq!(status, 200, "{json}");
    assert_eq!(cluster.holders(g), vec![A]);
    // B, then C queue behind it, asking other voters.
    let (status, json) = voter[2].pre_reboot(B, g);
    assert_eq!(
        (status, kind(&json)),
        (409, "failed_lock_semaphore_full"),
        "{json}"
    );
    assert!(value(&json).contains("queued at 1 of 1"), "{json}");
    let (status, json) = voter[0].pre_reboot(C, g);
    assert_eq!(status, 409, "{json}");
    assert!(value(&json).contains("queued at 2 of 2"), "{json}");
    // A asks again (on another voter): it holds, so OK (recursive lock).
    let (status, json) = voter[0].pre_reboot(A, g);
    assert_eq!(status, 200, "{json}");
    assert_eq!(cluster.holders(g), vec![A]);

    // B and C keep polling for longer than poll_ttl + waiter_ttl (4 s):
    // they keep their places, in order, and their polls write nothing to
    // the raft log (answered from the voters' state; sessions kept alive).
    let applied = |cluster: &TestCluster| {
        cluster.wait_for_leader(Duration::from_secs(10))["last_applied"]
            .as_u64()
            .expect("last_applied")
    };
    cluster.wait_voters_recorded();
    let before = applied(&cluster);
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let (status, json) = voter[2].pre_reboot(B, g);
        assert!(
            status == 409 && value(&json).contains("queued at 1 of 2"),
            "B: {json}"
        );
        let (status, json) = voter[0].pre_reboot(C, g);
        assert!(
            status == 409 && value(&json).contains("queued at 2 of 2"),
            "C: {json}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(queue(&cluster, g), vec![B, C]);
    assert_eq!(
        applied(&cluster),
        before,
        "polls while queued wrote entries"
    );

    // A is back: steady-state releases. B is next (FIFO), not C.
    let (status, json) = voter[1].steady_state(A, g);
    assert_eq!(status, 200, "{json}");
    let (status, json) = voter[0].pre_reboot(C, g);
    assert_eq!(status, 409, "C jumped the queue: {json}");
    voter[2].pre_reboot_until_ok(B, g, Duration::from_secs(5));
    assert_eq!(cluster.holders(g), vec![B]);
    let (status, json) = voter[0].pre_reboot(C, g);
    assert_eq!(status, 409, "two holders: {json}");

    // While B holds, D queues behind C and then goes silent; E queues
    // behind D and keeps polling with C.
    let (status, json) = voter[1].pre_reboot(D, g);
    assert!(
        status == 409 && value(&json).contains("queued at 2 of 2"),
        "D: {json}"
    );
    let (status, json) = voter[2].pre_reboot(E, g);
    assert!(
        status == 409 && value(&json).contains("queued at 3 of 3"),
        "E: {json}"
    );
    let until = Instant::now() + Duration::from_secs(8);
    let mut d_gone = false;
    while Instant::now() < until && !d_gone {
        let (status, json) = voter[0].pre_reboot(C, g);
        assert_eq!(status, 409, "C: {json}");
        let (status, json) = voter[2].pre_reboot(E, g);
        assert_eq!(status, 409, "E: {json}");
        d_gone = value(&json).contains("queued at 2 of 2");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        d_gone,
        "the silent client D is still queued: {:?}",
        queue(&cluster, g)
    );
    assert_eq!(queue(&cluster, g), vec![C, E]);

    // B releases; C, then E, each alone.
    let (status, _) = voter[2].steady_state(B, g);
    assert_eq!(status, 200);
    voter[0].pre_reboot_until_ok(C, g, Duration::from_secs(5));
    assert_eq!(cluster.holders(g), vec![C]);
    let (status, _) = voter[2].pre_reboot(E, g);
    assert_eq!(status, 409);
    let (status, _) = voter[0].steady_state(C, g);
    assert_eq!(status, 200);
    voter[2].pre_reboot_until_ok(E, g, Duration::from_secs(5));
    assert_eq!(cluster.holders(g), vec![E]);
    // Steady-state twice: both OK (idempotent); the group is free.
    for _ in 0..2 {
        let (status, json) = voter[1].steady_state(E, g);
        assert_eq!(status, 200, "{json}");
    }
    assert!(cluster.holders(g).is_empty());
    // D comes back later: it queues afresh and, alone, gets the slot.
    voter[1].pre_reboot_until_ok(D, g, Duration::from_secs(5));
    assert_eq!(cluster.holders(g), vec![D]);
    // FleetLock holders are lease holders like any: status shows them, and
    // another group is independent.
    voter[0].pre_reboot_until_ok(A, "workers", Duration::from_secs(5));
    assert_eq!(cluster.holders("workers"), vec![A]);
}

/// The one network FleetLock clients may call from besides loopback in the
/// refusal test (TEST-NET-3, unless this machine is in it).
const OTHER_NETWORK: &str = "203.0.113.0/24";

/// `curl -H "fleet-lock-protocol: true" -d BODY https://.../v1/steady-state`,
/// as in the protocol document; skipped without curl.
fn curl_steady_state(ca: &std::path::Path, port: u16, id: &str, group: &str) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-H", "fleet-lock-protocol: true", "-d", &body(id, group)])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/v1/steady-state"))
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return eprintln!("curl not run ({e}): the curl check is skipped"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.ends_with("\n200"),
        "curl: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(text.lines().next().unwrap_or_default()).expect("JSON");
    assert_eq!(kind(&json), "lock_released", "{json}");
}

/// A non-loopback address of this machine outside [`OTHER_NETWORK`], if it
/// has one (no packet is sent).
fn own_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    let inside = match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [203, 0, 113],
        IpAddr::V6(_) => false,
    };
    (!ip.is_loopback() && !ip.is_unspecified() && !inside).then_some(ip)
}

#[test]
fn fleetlock_refuses_what_the_protocol_and_the_config_do_not_allow() {
    let port = baton::free_port().expect("free port");
    // Plaintext (insecure cluster), on every address, for one network
    // this machine is not in: loopback is allowed, its own address is not.
    let cluster = TestCluster::insecure_with_drop_ins(1, "", &|_| {
        Some(drop_in(
            &format!("0.0.0.0:{port}"),
            &format!("allow_networks = [\"{OTHER_NETWORK}\"]\n"),
        ))
    });
    cluster.wait_for_leader(Duration::from_secs(10));
    let base = Base {
        client: Client::Plain,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    base.wait_up();
    let g = "default";

    // No protocol header, or not "true".
    let no_header = format!(
        "POST /v1/pre-reboot HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body(A, g).len(),
        body(A, g)
    );
    let (status, json) = base.send(&no_header);
    assert_eq!(
        (status, kind(&json)),
        (400, "missing_fleet_lock_header"),
        "{json}"
    );
    let (status, json) = base.send(
        &request("/v1/pre-reboot", &body(A, g))
            .replace("fleet-lock-protocol: true", "fleet-lock-protocol: false"),
    );
    assert_eq!(
        (status, kind(&json)),
        (400, "missing_fleet_lock_header"),
        "{json}"
    );
    // A group the config does not name.
    let (status, json) = base.pre_reboot(A, "databases");
    assert_eq!((status, kind(&json)), (403, "group_not_allowed"), "{json}");
    assert!(
        value(&json).contains("\"databases\" is not served over FleetLock"),
        "{json}"
    );
    // Ids and groups that no holder or group may have (rules::names).
    for (id, group) in [("localhost", g), ("a b", g), ("", g), (A, ""), (A, "a/b")] {
        let (status, json) = base.pre_reboot(id, group);
        assert_eq!(
            (status, kind(&json)),
            (400, "invalid_client_params"),
            "{id:?} {group:?}: {json}"
        );
    }
    // Bodies that are not the protocol's.
    for bad in ["", "{}", "not json", r#"{"client_params":{"id":"x"}}"#] {
        let (status, json) = base.send(&request("/v1/steady-state", bad));
        assert_eq!(
            (status, kind(&json)),
            (400, "invalid_client_params"),
            "{bad:?}: {json}"
        );
    }
    // A body over the limit (4 KiB), declared or not.
    let padded = format!(
        r#"{{"client_params":{{"id":"{A}","group":"{g}"}},"pad":"{}"}}"#,
        "x".repeat(5000)
    );
    let (status, json) = base.send(&request("/v1/pre-reboot", &padded));
    assert_eq!((status, kind(&json)), (413, "body_too_large"), "{json}");
    let chunked = format!(
        "POST /v1/pre-reboot HTTP/1.1\r\nHost: x\r\nfleet-lock-protocol: true\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{padded}\r\n0\r\n\r\n",
        padded.len()
    );
    let (status, json) = base.send(&chunked);
    assert_eq!((status, kind(&json)), (413, "body_too_large"), "{json}");
    // A request head over the limit (8 KiB) is not served.
    let huge = request("/v1/pre-reboot", &body(A, g)).replace(
        "Host: fleetlock",
        &format!("Host: fleetlock\r\nX-Pad: {}", "a".repeat(16 * 1024)),
    );
    if let Ok(answer) = base.raw(&huge) {
        assert!(!answer.starts_with("HTTP/1.1 200"), "served: {answer:.200}");
    }
    // Only POST, only the two paths (no /metrics here).
    let get = "GET /v1/pre-reboot HTTP/1.1\r\nHost: x\r\nfleet-lock-protocol: true\r\nConnection: close\r\n\r\n";
    let (status, json) = base.send(get);
    assert_eq!((status, kind(&json)), (405, "method_not_allowed"), "{json}");
    for path in ["/v1/other", "/metrics", "/v1/pre-reboot/x"] {
        let (status, json) = base.send(&request(path, &body(A, g)));
        assert_eq!((status, kind(&json)), (404, "not_found"), "{path}: {json}");
    }
    // Nothing refused took a slot.
    assert!(cluster.holders(g).is_empty());
    assert!(queue(&cluster, g).is_empty());

    // From this machine's own (non-loopback) address, outside the allowed
    // networks: refused before anything is read.
    match own_address() {
        Some(ip) => {
            let outside = Base {
                client: Client::Plain,
                address: SocketAddr::new(ip, port),
            };
            let (status, json) = outside.pre_reboot(A, g);
            assert_eq!((status, kind(&json)), (403, "forbidden"), "{json}");
            assert!(value(&json).contains("allow_networks"), "{json}");
        }
        None => eprintln!("no non-loopback address here: the network refusal is not tested"),
    }
    assert!(cluster.holders(g).is_empty());

    // And the endpoint still serves what is right.
    let (status, json) = base.pre_reboot(A, g);
    assert_eq!(status, 200, "{json}");
    assert_eq!(cluster.holders(g), vec![A]);
    let (status, json) = base.steady_state(A, g);
    assert_eq!(status, 200, "{json}");
    assert!(cluster.holders(g).is_empty());

    // A paused group queues (409 failed_lock_paused, with the reason); on
    // resume the waiter gets the slot at its next poll.
    let out = cluster.cli(&["pause", g, "--reason", "change freeze"]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    for _ in 0..2 {
        let (status, json) = base.pre_reboot(B, g);
        assert_eq!((status, kind(&json)), (409, "failed_lock_paused"), "{json}");
        assert!(value(&json).contains("change freeze"), "{json}");
    }
    let out = cluster.cli(&["resume", g]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    base.pre_reboot_until_ok(B, g, Duration::from_secs(5));
    assert_eq!(cluster.holders(g), vec![B]);
}
