//! Client networks (CIDRs) for HTTP endpoints without client certificates: parse, match.

use std::fmt;
use std::net::IpAddr;

/// One network, `ADDR/PREFIX` (`10.0.0.0/8`, `fd00::/8`); a bare address is
/// that address alone (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or `ADDR`; the host bits must be zero
    /// (`10.0.0.1/8` is refused: it reads as a typo for one host or one net).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IP address"))?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("prefix {p:?} is not a number from 0 to {max}")),
            },
        };
        let cidr = Cidr { network, prefix };
        if masked(network, prefix) != bits(network) {
            return Err(format!(
                "{text} has host bits set; write the network, e.g. {}/{prefix}",
                show(network, masked(network, prefix))
            ));
        }
        Ok(cidr)
    }

    /// Whether `address` is inside this network. An IPv4 address mapped into
    /// IPv6 (`::ffff:10.0.0.1`, as a dual-stack listener sees it) counts as IPv4.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        match (self.network, address) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                masked(address, self.prefix) == bits(self.network)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether a client at `address` may call an endpoint limited to `allowed`
/// networks: loopback always may (the host itself), others only inside one.
pub fn network_allowed(address: IpAddr, allowed: &[Cidr]) -> bool {
    address.to_canonical().is_loopback() || allowed.iter().any(|cidr| cidr.contains(address))
}

fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn bits(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address's bits with everything after `prefix` cleared.
fn masked(address: IpAddr, prefix: u8) -> u128 {
    let width = u32::from(max_prefix(address));
    let host_bits = width - u32::from(prefix);
    let value = bits(address);
    if host_bits >= 128 {
        0
    } else {
        (value >> host_bits) << host_bits
    }
}

fn show(like: IpAddr, value: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(value as u32)),
        IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(!net.contains(ip("fd00::1")));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert!(one.contains(ip("192.168.1.7")));
        assert!(!one.contains(ip("192.168.1.8")));
        let v6 = Cidr::parse("fd00:1::/32").unwrap();
        assert!(v6.contains(ip("fd00:1:0:5::1")));
        assert!(!v6.contains(ip("fd00:2::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert_eq!(net.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn bad_networks_are_refused_with_the_reason() {
        assert!(Cidr::parse("10.1.2.3/16")
            .unwrap_err()
            .contains("e.g. 10.1.0.0/16"));
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("example.com/8")
            .unwrap_err()
            .contains("not an IP"));
        assert!(Cidr::parse("10.0.0.0/x").is_err());
    }

    #[test]
    fn loopback_is_always_allowed_others_only_inside_a_network() {
        let allowed = [Cidr::parse("10.0.0.0/8").unwrap()];
        assert!(network_allowed(ip("127.0.0.1"), &[]));
        assert!(network_allowed(ip("::1"), &[]));
        assert!(network_allowed(ip("::ffff:127.0.0.1"), &[]));
        assert!(!network_allowed(ip("10.0.0.5"), &[]));
        assert!(network_allowed(ip("10.0.0.5"), &allowed));
        assert!(!network_allowed(ip("192.168.0.5"), &allowed));
    }
}
