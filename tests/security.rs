//! Only the fleet gets in: mutual TLS, the role of each certificate, bounded input, rotation.
//!
//! Real voters with TLS from a CA of the test's own; clients are the real
//! CLI or gRPC channels presenting certificates of chosen roles (and
//! certificates of another CA, expired ones, none at all).

use std::sync::Arc;
use std::time::Duration;

use baton::{ClientIdentity, Dialer, Role, TlsMode, TlsState, TypeConfig};
use baton_proto::v1 as pb;
use openraft::raft::{InstallSnapshotRequest, VoteRequest};
use openraft::{SnapshotMeta, Vote};

use crate::support::{stderr, stdout, AgentHost, TestCluster};

const EX_NOPERM: i32 = 77;

pub(crate) fn identity(cluster: &TestCluster, name: &str, role: Role) -> ClientIdentity {
    cluster
        .layout
        .client_identity(name, role)
        .expect("issue a certificate")
        .expect("a TLS cluster")
}

pub(crate) fn dialer_as(identity: &ClientIdentity) -> Dialer {
    let tls = TlsState::load(&identity.files()).expect("load the identity");
    Dialer::new(
        Duration::from_secs(2),
        Duration::from_secs(5),
        TlsMode::Mutual(tls),
    )
}

pub(crate) fn cli_as(
    cluster: &TestCluster,
    identity: &ClientIdentity,
    args: &[&str],
) -> std::process::Output {
    let mut all: Vec<String> = identity.cli_args();
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    cluster.cli_raw(&refs)
}

#[test]
fn each_role_may_do_what_it_is_for_and_no_more() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let h1 = identity(&cluster, "h1", Role::Host);

    // A host takes and gives back its own lease.
    let out = cli_as(
        &cluster,
        &h1,
        &["lease", "acquire", "workers", "--holder", "h1"],
    );
    assert!(
        out.status.success(),
        "h1 acquires as itself: {}",
        stderr(&out)
    );

    // ...but not another host's, and never the Admin service.
    for args in [
        vec!["lease", "acquire", "workers", "--holder", "h2"],
        vec!["lease", "acquire", "workers", "--holder", "h2", "--wait"],
        vec!["lease", "release", "workers", "--holder", "h2"],
        vec!["pause", "--reason", "mine now"],
        vec!["set-max", "workers", "5"],
        vec!["unlock", "workers", "h1"],
        vec!["voter", "add", "9", "h1", "127.0.0.1:1"],
    ] {
        let out = cli_as(&cluster, &h1, &args);
        assert_eq!(
            out.status.code(),
            Some(EX_NOPERM),
            "{args:?}: {}",
            stderr(&out)
        );
        let line = stderr(&out);
        assert!(
            line.contains("permission denied: h1 (host) may not call"),
            "{line}"
        );
        assert_eq!(line.trim().lines().count(), 1, "one line: {line}");
    }
    // Status and Watch: any certificate of the cluster.
    let out = cli_as(&cluster, &h1, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Keeping sessions alive is for voters: a host cannot keep others' places.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let refused = runtime.block_on(async {
        let channel = dialer_as(&h1)
            .connect(&cluster.address(0))
            .await
            .expect("connect");
        pb::lease_client::LeaseClient::new(channel)
            .keep_alive(pb::KeepAliveRequest {
                sessions: vec![pb::SessionRef {
                    group: "workers".into(),
                    holder: "h2".into(),
                }],
            })
            .await
            .expect_err("a host may not call KeepAlive")
    });
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");

    // An admin may unlock anyone's lease; the journal of the action names it.
    let out = cluster.cli(&["unlock", "workers", "h1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("force-released h1"),
        "{}",
        stdout(&out)
    );
    let logs = cluster.all_logs();
    assert!(
        logs.contains("refused: h1 (host) may not call Admin.Pause"),
        "refusals are logged with the caller:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_current_voters_speak_raft() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let vote = VoteRequest::<u64>::new(Vote::new(99, 9), None);
    let payload = pb::RaftPayload {
        data: serde_json::to_vec(&vote).unwrap(),
    };
    for (name, role) in [
        ("h1", Role::Host),
        ("ops", Role::Admin),
        ("cp-9", Role::Voter),
    ] {
        let dialer = dialer_as(&identity(&cluster, name, role));
        let channel = dialer
            .connect(&cluster.address(0))
            .await
            .expect("TLS connects");
        let err = pb::raft_client::RaftClient::new(channel)
            .vote(payload.clone())
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{name}: {err}");
        assert!(
            err.message()
                .contains("only voter certificates of current voters"),
            "{err}"
        );
    }
    // The term did not move: nobody got a vote in.
    let status = cluster.wait_for_leader(Duration::from_secs(5));
    assert!(status["term"].as_u64().unwrap() < 99, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_snapshot_chunk_cannot_crash_a_voter() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let chunk = |offset: u64| {
        let request = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(1, 1),
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: Default::default(),
                snapshot_id: "forged".into(),
            },
            offset,
            data: vec![1, 2, 3],
            done: false,
        };
        pb::RaftPayload {
            data: serde_json::to_vec(&request).unwrap(),
        }
    };
    // From a host certificate: refused before anything is decoded.
    let host = dialer_as(&identity(&cluster, "h1", Role::Host));
    let channel = host.connect(&cluster.address(1)).await.unwrap();
    let err = pb::raft_client::RaftClient::new(channel)
        .install_snapshot(chunk(0))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");

    // Even from a voter's certificate, a chunk at 2^62 is refused, and the
    // voter lives on (the attack that used to abort it allocating 4 EiB).
    let voter = dialer_as(&identity(&cluster, "cp-1", Role::Voter));
    let channel = voter.connect(&cluster.address(1)).await.unwrap();
    let mut raft = pb::raft_client::RaftClient::new(channel);
    // A voter that started without state takes raft traffic only once it
    // knows it may join (`RaftGate`): wait for that first.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        let err = raft
            .install_snapshot(chunk(1 << 62))
            .await
            .expect_err("out-of-range chunk");
        if err.code() != tonic::Code::Unavailable || std::time::Instant::now() > deadline {
            break err;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("snapshot limit") || err.message().contains("gap"),
        "{err}"
    );
    let err = raft
        .install_snapshot(chunk(1 << 20))
        .await
        .expect_err("a gap");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(cluster.voters[1].is_running());
    assert!(cluster.status_json_at(1).is_some(), "voter 2 still answers");
}

#[test]
fn strangers_are_turned_away_at_the_handshake() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().to_str().unwrap();
    let baton = |args: &[&str]| {
        std::process::Command::new(crate::support::baton_bin())
            .args(args)
            .output()
            .unwrap()
    };
    // A certificate of another CA.
    assert!(baton(&["cert", "init", "--dir", other]).status.success());
    assert!(
        baton(&["cert", "issue", "ops", "--role", "admin", "--dir", other])
            .status
            .success()
    );
    let cluster_ca = identity(&cluster, "test-admin", Role::Admin).ca;
    let out = cluster.cli_raw(&[
        "--ca",
        cluster_ca.to_str().unwrap(),
        "--cert",
        &format!("{other}/ops.crt"),
        "--key",
        &format!("{other}/ops.key"),
        "status",
    ]);
    assert!(
        !out.status.success(),
        "a stranger's certificate must not get in"
    );
    assert!(
        cluster.all_logs().contains("not from this cluster's CA")
            || cluster.all_logs().contains("UnknownIssuer"),
        "the voter says why:\n{}",
        cluster.all_logs()
    );

    // No TLS at all: refused, and the error says what to check.
    let out = cluster.cli_raw(&["--insecure", "status", "--request-timeout", "2s"]);
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}\n{}",
        stderr(&out),
        cluster.all_logs()
    );
    let line = stderr(&out);
    assert!(line.contains("does the voter require TLS?"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_or_none_is_refused() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let admin = identity(&cluster, "test-admin", Role::Admin);
    let ca_dir = admin.ca.parent().unwrap().to_path_buf();

    // An admin certificate of the right CA that expired yesterday.
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca.key")).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(&admin.ca).unwrap(), ca_key)
            .unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "old-admin");
    params.subject_alt_names = vec![rcgen::SanType::URI("baton:role:admin".try_into().unwrap())];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("old.crt"), dir.path().join("old.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let out = cluster.cli_raw(&[
        "--ca",
        admin.ca.to_str().unwrap(),
        "--cert",
        cert_path.to_str().unwrap(),
        "--key",
        key_path.to_str().unwrap(),
        "pause",
        "--reason",
        "expired admin",
    ]);
    assert!(
        !out.status.success(),
        "an expired certificate must not get in"
    );
    assert!(
        cluster.all_logs().contains("xpired"),
        "{}",
        cluster.all_logs()
    );

    // A TLS client without any certificate.
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        for cert in baton_ca(&admin) {
            roots.add(cert).unwrap();
        }
        Arc::new(roots)
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(cluster.address(0))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let outcome = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        // TLS 1.3: the server's verdict on the (missing) client certificate
        // arrives with the first read.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    }
    .await;
    assert!(
        matches!(outcome, Err(_) | Ok(0)),
        "a client without a certificate is cut off: {outcome:?}"
    );
}

fn baton_ca(identity: &ClientIdentity) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(&identity.ca)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_input_and_caps_are_refused_and_the_cluster_keeps_committing() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let mut client = cluster.lease_client(0).await;
    let acquire = |machine_id: String, holder: &str| pb::AcquireRequest {
        group: "caps".into(),
        holder: holder.into(),
        machine_id,
        released: None,
    };
    // A machine id over its field limit: InvalidArgument, nothing proposed.
    let err = client
        .acquire(acquire("m".repeat(65), "h1"))
        .await
        .expect_err("too long");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    // 2 MiB: over the message limit, refused before it is even decoded.
    let err = client
        .acquire(acquire("m".repeat(2 << 20), "h1"))
        .await
        .expect_err("too big");
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err}"
    );
    for (args, what) in [
        (vec!["set-max", "caps", "4294967295"], "must be 1 to 1000"),
        (vec!["set-max", "caps", "0"], "must be 1 to 1000"),
        (
            vec!["lease", "acquire", "caps", "--holder", "localhost"],
            "names every host",
        ),
        (
            vec!["lease", "acquire", "caps", "--holder", "a b"],
            "whitespace",
        ),
    ] {
        let out = cluster.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(what), "{args:?}: {}", stderr(&out));
    }
    let out = cluster.cli(&["pause", "--reason", &"r".repeat(300)]);
    assert!(stderr(&out).contains("at most 256"), "{}", stderr(&out));

    // The same holder name from another machine, while granted: refused.
    let granted = client
        .acquire(acquire("aaaa".into(), "shared"))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        granted.outcome,
        Some(pb::acquire_response::Outcome::Granted(_))
    ));
    let err = client
        .acquire(acquire("bbbb".into(), "shared"))
        .await
        .expect_err("another machine");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(
        err.message().contains("two hosts must not share a name"),
        "{err}"
    );

    // Watch streams per caller are capped.
    let h1 = identity(&cluster, "watcher", Role::Host);
    let dialer = dialer_as(&h1);
    let mut streams = Vec::new();
    for _ in 0..8 {
        let channel = dialer.stream_channel(&cluster.address(0)).unwrap();
        let stream = pb::lease_client::LeaseClient::new(channel)
            .watch(pb::WatchRequest {
                group: "caps".into(),
            })
            .await
            .expect("within the cap");
        streams.push(stream);
    }
    let channel = dialer.stream_channel(&cluster.address(0)).unwrap();
    let err = pb::lease_client::LeaseClient::new(channel)
        .watch(pb::WatchRequest {
            group: "caps".into(),
        })
        .await
        .expect_err("over the cap");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    drop(streams);

    // And the cluster still commits.
    let out = cluster.cli(&["lease", "acquire", "after", "--holder", "h9"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn certificates_rotate_without_a_restart_and_a_held_lease_survives() {
    let cluster = TestCluster::start(3, "");
    cluster.wait_for_leader(Duration::from_secs(10));
    let out = cluster.cli(&["lease", "acquire", "workers", "--holder", "h1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    let expiry = |status: &serde_json::Value, i: usize| status["voters"][i]["cert_expires"].clone();
    // cp-1's own view of itself (`--stale`: served by cp-1, not the leader,
    // which knows a peer's certificate from its last handshake with it).
    let own_status = || {
        let out = cluster.cli_at(&cluster.address(0), &["status", "--json", "--stale"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let before = own_status();
    assert!(expiry(&before, 0).is_string(), "{before}");

    // Re-issue cp-1's certificate for another lifetime, in place.
    let dir = identity(&cluster, "test-admin", Role::Admin)
        .ca
        .parent()
        .unwrap()
        .to_path_buf();
    let out = std::process::Command::new(crate::support::baton_bin())
        .args([
            "cert",
            "issue",
            "cp-1",
            "--role",
            "voter",
            "--address",
            "127.0.0.1",
        ])
        .args(["--days", "3", "--force", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The voter picks the files up by itself (it checks every 10 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = own_status();
        if expiry(&status, 0) != expiry(&before, 0) {
            // The lease is still held, under the same token.
            let holders = &status["groups"]["workers"]["holders"];
            assert_eq!(holders[0]["holder"], "h1", "{status}");
            assert_eq!(holders[0]["token"].to_string(), token, "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reload:\n{}",
            cluster.log(0)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(cluster.log(0).contains("TLS: read"), "{}", cluster.log(0));
    // New connections use the new certificate: a fresh CLI call still works.
    let out = cluster.cli_at(&cluster.address(0), &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_insecure_cluster_says_so() {
    let cluster = TestCluster::insecure(3, "");
    let status = cluster.wait_for_leader(Duration::from_secs(10));
    assert_eq!(status["insecure"], true, "{status}");
    let out = cluster.cli(&["status"]);
    assert!(
        stdout(&out).contains("WARNING: this cluster runs without TLS"),
        "{}",
        stdout(&out)
    );
    assert!(cluster.log(0).contains("INSECURE"), "{}", cluster.log(0));
}

#[test]
fn a_host_whose_certificate_names_another_host_does_not_start() {
    let cluster = TestCluster::start(3, "");
    let mut host = AgentHost::new(&cluster, "named-a", "");
    // Its certificate files now say "someone-else".
    let other = identity(&cluster, "someone-else", Role::Host);
    let dir = other.cert.parent().unwrap().to_path_buf();
    std::fs::copy(&other.cert, dir.join("named-a.crt")).unwrap();
    std::fs::copy(&other.key, dir.join("named-a.key")).unwrap();
    host.start();
    let exit = host.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(
        exit.code(),
        Some(78),
        "a configuration error: {}",
        host.log()
    );
    assert!(
        host.log()
            .contains("names \"someone-else\", but node.name is \"named-a\""),
        "{}",
        host.log()
    );
}
