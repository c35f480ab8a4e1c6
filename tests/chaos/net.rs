//! The run's network: namespaces, bridge and veths, their faults, their clean-up.

use std::path::Path;
use std::process::{Command, Stdio};

use super::PORT;

/// Runs a command; its stderr on failure.
pub(super) fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub(super) fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("{e}");
    }
}

/// Why this test cannot run here, if it cannot.
pub(super) fn cannot_run() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Some("not root: network namespaces need root".into());
    }
    let probe = format!("bchaosprobe{}", std::process::id());
    if let Err(e) = run(&["ip", "netns", "add", &probe]) {
        return Some(format!("`ip netns` is not available: {e}"));
    }
    let _ = run(&["ip", "netns", "del", &probe]);
    None
}

/// The test's network: a bridge in the root namespace (where the test and
/// its clients live) and one namespace per voter, joined by veth pairs.
/// Names carry this process's id; dropping it removes them all.
pub(super) struct Net {
    pub(super) tag: u32,
    /// The x of 10.77.x.0/24.
    pub(super) subnet: u8,
    pub(super) bridge: Option<String>,
    pub(super) namespaces: Vec<String>,
    pub(super) veths: Vec<String>,
    /// `nft` works in the voters' namespaces (loss and the one-pair cut).
    pub(super) nft: bool,
    /// Why netem cannot be used, if it cannot.
    pub(super) no_netem: Option<String>,
}

impl Net {
    pub(super) fn setup(n: usize) -> Net {
        remove_stale();
        let tag = std::process::id();
        let mut net = Net {
            tag,
            subnet: free_subnet(),
            bridge: None,
            namespaces: Vec::new(),
            veths: Vec::new(),
            nft: false,
            no_netem: None,
        };
        let bridge = format!("br-baton{tag}");
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        net.bridge = Some(bridge.clone());
        let own = format!("10.77.{}.254/24", net.subnet);
        must(&["ip", "addr", "add", &own, "dev", &bridge]);
        must(&["ip", "link", "set", &bridge, "up"]);
        for i in 0..n {
            let ns = format!("bchaos{tag}-{}", i + 1);
            must(&["ip", "netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let veth = format!("vb{tag}-{}", i + 1);
            let peer = format!("vn{tag}-{}", i + 1);
            must(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
            ]);
            net.veths.push(veth.clone());
            must(&["ip", "link", "set", &peer, "netns", &ns]);
            must(&["ip", "-n", &ns, "link", "set", &peer, "name", "eth0"]);
            let address = format!("{}/24", net.ip(i));
            must(&["ip", "-n", &ns, "addr", "add", &address, "dev", "eth0"]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            must(&["ip", "link", "set", &veth, "master", &bridge]);
            must(&["ip", "link", "set", &veth, "up"]);
        }
        net.nft = (0..n).all(|i| {
            net.nft(i, "add table inet chaos").is_ok()
                && net
                    .nft(
                        i,
                        "add chain inet chaos input { type filter hook input priority 0 ; }",
                    )
                    .is_ok()
                && net
                    .nft(
                        i,
                        "add chain inet chaos output { type filter hook output priority 0 ; }",
                    )
                    .is_ok()
        });
        let ns = net.namespaces[0].clone();
        let netem = ["root", "netem", "delay", "1ms"];
        net.no_netem = match run(&[
            &["tc", "-n", &ns, "qdisc", "add", "dev", "eth0"][..],
            &netem,
        ]
        .concat())
        {
            Ok(_) => {
                let _ = run(&["tc", "-n", &ns, "qdisc", "del", "dev", "eth0", "root"]);
                None
            }
            Err(e) => Some(e),
        };
        net
    }

    pub(super) fn ip(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.subnet, i + 1)
    }

    pub(super) fn address(&self, i: usize) -> String {
        format!("{}:{PORT}", self.ip(i))
    }

    pub(super) fn nft(&self, i: usize, command: &str) -> Result<String, String> {
        run(&["ip", "netns", "exec", &self.namespaces[i], "nft", command])
    }

    /// Takes voter `i`'s link to the bridge down (or up again): nothing
    /// reaches it or leaves it, the test's clients included.
    pub(super) fn isolate(&self, i: usize, on: bool) {
        let state = if on { "down" } else { "up" };
        must(&["ip", "link", "set", &self.veths[i], state]);
    }

    /// Drops every packet between voters `a` and `b` (or lets them through
    /// again); both still reach everyone else.
    pub(super) fn cut(&self, a: usize, b: usize, on: bool) {
        for (me, peer) in [(a, b), (b, a)] {
            let peer = self.ip(peer);
            if self.nft {
                if on {
                    let drop_in = format!("add rule inet chaos input ip saddr {peer} drop");
                    let drop_out = format!("add rule inet chaos output ip daddr {peer} drop");
                    self.nft(me, &drop_in).expect("nft rule");
                    self.nft(me, &drop_out).expect("nft rule");
                } else {
                    self.flush(me);
                }
            } else {
                let verb = if on { "add" } else { "del" };
                let route = format!("{peer}/32");
                let ns = &self.namespaces[me];
                must(&["ip", "-n", ns, "route", verb, "blackhole", &route]);
            }
        }
    }

    /// Drops `percent` of the packets each voter sends and receives (or stops).
    pub(super) fn loss(&self, percent: u32, on: bool) {
        for i in 0..self.namespaces.len() {
            if on {
                for (chain, dev) in [("input", "iifname"), ("output", "oifname")] {
                    let rule = format!(
                        "add rule inet chaos {chain} {dev} \"eth0\" numgen random mod 100 lt {percent} drop"
                    );
                    self.nft(i, &rule).expect("nft loss rule");
                }
            } else {
                self.flush(i);
            }
        }
    }

    pub(super) fn flush(&self, i: usize) {
        self.nft(i, "flush chain inet chaos input")
            .expect("nft flush");
        self.nft(i, "flush chain inet chaos output")
            .expect("nft flush");
    }

    /// netem on every voter's link: `spec` such as "delay 50ms loss 5%" (or none).
    pub(super) fn netem(&self, spec: &str, on: bool) {
        for ns in &self.namespaces {
            if on {
                let mut args = vec![
                    "tc", "-n", ns, "qdisc", "add", "dev", "eth0", "root", "netem",
                ];
                args.extend(spec.split_whitespace());
                must(&args);
            } else {
                must(&["tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root"]);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        for veth in &self.veths {
            // Gone with its peer's namespace, unless something still runs there.
            let _ = run(&["ip", "link", "del", veth]);
        }
        if let Some(bridge) = &self.bridge {
            let _ = run(&["ip", "link", "del", bridge]);
        }
    }
}

/// The id in `name` = `prefix` + digits (+ `-` + digits when `numbered`).
pub(super) fn tag_of(name: &str, prefix: &str, numbered: bool) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (tag, number) = match rest.split_once('-') {
        Some((tag, number)) if numbered => (tag, number),
        None if !numbered => (rest, "0"),
        _ => return None,
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(tag) && digits(number))
        .then(|| tag.parse().ok())
        .flatten()
}

/// Removes the namespaces and links of earlier runs whose process is gone
/// (a run killed before its clean-up).
pub(super) fn remove_stale() {
    let dead = |tag: u32| !Path::new(&format!("/proc/{tag}")).exists();
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if tag_of(name, "bchaos", true).is_some_and(dead) {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(list) = run(&["ip", "-o", "link", "show"]) {
        for line in list.lines() {
            let Some(name) = line.split(':').nth(1) else {
                continue;
            };
            let name = name.trim().split('@').next().unwrap_or_default();
            let stale = tag_of(name, "br-baton", false).is_some_and(dead)
                || tag_of(name, "vb", true).is_some_and(dead);
            if stale {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
}

/// A 10.77.x.0/24 no address or route of the root namespace uses.
pub(super) fn free_subnet() -> u8 {
    let used = [
        run(&["ip", "-4", "-o", "addr", "show"]).unwrap_or_default(),
        run(&["ip", "-4", "route", "show"]).unwrap_or_default(),
    ]
    .concat();
    let start = std::process::id() % 250;
    (0..250)
        .map(|k| ((start + k) % 250 + 1) as u8)
        .find(|x| !used.contains(&format!("10.77.{x}.")))
        .expect("a free 10.77.x.0/24")
}
