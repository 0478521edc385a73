//! IP networks for `in_networks`: strict parsing and containment with plain integer masks.
//!
//! A network is an address and a prefix length; `10.0.0.0/8` contains `10.1.2.0/24` because
//! the inner prefix is at least as long and the inner address, masked to the outer prefix, is
//! the outer address. That is all of CIDR containment, done here on `u32`/`u128` with std::net
//! parsing the addresses.
//!
//! Parsing is strict because a firewall argument is text that another program will read again:
//! * a bare address is a host network (`/32`, `/128`);
//! * host bits after the prefix (`10.0.0.5/8`) are refused: did the caller mean the host or the
//!   network? (in the policy file this is a configuration error with the network it meant);
//! * IPv4 octets with leading zeros (`010.0.0.1`) are refused: some parsers read them as octal;
//! * zone ids (`fe80::1%em0`), whitespace, `!` negation, ranges, lists, `any` and alias names are
//!   not addresses, so they never lie inside an allowed network;
//! * an IPv4-mapped IPv6 network (`::ffff:10.0.0.1`, prefix at least 96) is the IPv4 network it
//!   maps, so it can neither slip past an IPv4 allow-list nor be refused by one; other IPv6
//!   networks never lie inside IPv4 ones, nor IPv4 inside IPv6.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest text parsed as a network; the longest real one (`ffff:...:255.255.255.255/128`) is
/// 49 bytes.
const MAX_TEXT: usize = 64;

/// An IP network whose address has no bits set beyond its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    V4 { addr: u32, len: u8 },
    V6 { addr: u128, len: u8 },
}

/// Why a text is not a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// Not an address or CIDR at all (an alias, `any`, a typo, a zone id...).
    NotANetwork,
    /// A valid address and prefix, but with host bits set; `network` is what it masks to.
    HostBits { network: Net },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::NotANetwork => f.write_str("is not an IP address or CIDR network"),
            NetError::HostBits { network } => {
                write!(
                    f,
                    "has host bits set after its prefix (the network is {network})"
                )
            }
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Net::V4 { addr, len } => write!(f, "{}/{len}", Ipv4Addr::from(addr)),
            Net::V6 { addr, len } => write!(f, "{}/{len}", Ipv6Addr::from(addr)),
        }
    }
}

/// The high 96 bits of `::ffff:0:0/96`, the IPv4-mapped IPv6 addresses.
const MAPPED_PREFIX: u128 = 0xffff;

impl Net {
    /// Parses `ADDR` or `ADDR/LEN` strictly (see the module documentation).
    pub fn parse(text: &str) -> Result<Net, NetError> {
        if text.is_empty()
            || text.len() > MAX_TEXT
            || !text
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'/'))
        {
            return Err(NetError::NotANetwork);
        }
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(parse_prefix(len)?)),
            None => (text, None),
        };
        let net = if addr.contains(':') {
            // The dotted tail of `::ffff:1.2.3.4` follows the IPv4 rules too.
            if let Some((_, tail)) = addr.rsplit_once(':')
                && tail.contains('.')
            {
                check_dotted_quad(tail)?;
            }
            let ip: Ipv6Addr = addr.parse().map_err(|_| NetError::NotANetwork)?;
            let len = len.unwrap_or(128);
            if len > 128 {
                return Err(NetError::NotANetwork);
            }
            Net::V6 {
                addr: u128::from(ip),
                len,
            }
        } else {
            check_dotted_quad(addr)?;
            let ip: Ipv4Addr = addr.parse().map_err(|_| NetError::NotANetwork)?;
            let len = len.unwrap_or(32);
            if len > 32 {
                return Err(NetError::NotANetwork);
            }
            Net::V4 {
                addr: u32::from(ip),
                len,
            }
        };
        let masked = net.masked();
        if masked != net {
            return Err(NetError::HostBits {
                network: masked.unmapped(),
            });
        }
        Ok(net.unmapped())
    }

    /// The same prefix with every host bit cleared.
    fn masked(self) -> Net {
        match self {
            Net::V4 { addr, len } => Net::V4 {
                addr: addr & mask32(len),
                len,
            },
            Net::V6 { addr, len } => Net::V6 {
                addr: addr & mask128(len),
                len,
            },
        }
    }

    /// An IPv6 network inside `::ffff:0:0/96` as the IPv4 network it maps; others unchanged.
    fn unmapped(self) -> Net {
        match self {
            Net::V6 { addr, len } if len >= 96 && addr >> 32 == MAPPED_PREFIX => Net::V4 {
                // Truncation keeps exactly the low 32 bits, the mapped IPv4 address.
                addr: addr as u32,
                len: len - 96,
            },
            other => other,
        }
    }

    /// Whether every address of `inner` lies in `self` (same family, prefix at least as long,
    /// same leading bits).
    pub fn contains(&self, inner: &Net) -> bool {
        match (*self, *inner) {
            (Net::V4 { addr, len }, Net::V4 { addr: a, len: l }) => {
                l >= len && a & mask32(len) == addr
            }
            (Net::V6 { addr, len }, Net::V6 { addr: a, len: l }) => {
                l >= len && a & mask128(len) == addr
            }
            _ => false,
        }
    }
}

impl Net {
    /// Whether the address `ip` lies in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is the IPv4 address it maps, as for networks.
    pub(crate) fn contains_addr(&self, ip: IpAddr) -> bool {
        let host = match ip.to_canonical() {
            IpAddr::V4(v4) => Net::V4 {
                addr: u32::from(v4),
                len: 32,
            },
            IpAddr::V6(v6) => Net::V6 {
                addr: u128::from(v6),
                len: 128,
            },
        };
        self.contains(&host)
    }
}

/// The prefix after `/`: 1 to 3 ASCII digits, no leading zero, no sign.
fn parse_prefix(text: &str) -> Result<u8, NetError> {
    let ok = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !ok {
        return Err(NetError::NotANetwork);
    }
    text.parse().map_err(|_| NetError::NotANetwork)
}

/// Four decimal octets with no leading zeros (std::net refuses them too; checked here so the
/// rule does not depend on a parser detail).
fn check_dotted_quad(text: &str) -> Result<(), NetError> {
    let mut parts = 0;
    for part in text.split('.') {
        parts += 1;
        let ok = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'));
        if !ok {
            return Err(NetError::NotANetwork);
        }
    }
    if parts == 4 {
        Ok(())
    } else {
        Err(NetError::NotANetwork)
    }
}

fn mask32(len: u8) -> u32 {
    match len {
        0 => 0,
        l => u32::MAX << (32 - u32::from(l.min(32))),
    }
}

fn mask128(len: u8) -> u128 {
    match len {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l.min(128))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        Net::parse(s).unwrap()
    }

    #[test]
    fn parses_and_normalizes() {
        let cases: &[(&str, &str)] = &[
            ("10.0.0.1", "10.0.0.1/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:DB8::1", "2001:db8::1/128"),
            ("::ffff:10.0.0.1", "10.0.0.1/32"),
            ("::FFFF:a00:1", "10.0.0.1/32"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            // Below /96 the network holds more than mapped addresses: it stays IPv6.
            ("::ffff:0:0/95", "::fffe:0:0/95"),
            // IPv4-compatible (deprecated) addresses are plain IPv6.
            ("::10.0.0.1", "::a00:1/128"),
        ];
        for (text, want) in cases {
            match Net::parse(text) {
                Ok(n) => assert_eq!(n.to_string(), *want, "{text}"),
                Err(NetError::HostBits { network }) => {
                    assert_eq!(network.to_string(), *want, "{text} (host bits)")
                }
                Err(e) => panic!("{text}: {e}"),
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        for text in [
            "",
            "any",
            "lan",
            "LAN_NET",
            "cafe",
            "10.0.0",
            "10.0.0.256",
            "010.0.0.1",
            "10.0.0.01",
            "::ffff:010.0.0.1",
            "0x0a.0.0.1",
            "10.0.0.1/",
            "10.0.0.1/33",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "::/129",
            "fe80::1%em0",
            " 10.0.0.1",
            "10.0.0.1 ",
            "10.0.0.1\n",
            "!10.0.0.0/8",
            "10.0.0.1-10.0.0.9",
            "10.0.0.1,10.0.0.2",
            "１0.0.0.1",
            "10.0.0.1/３2",
            &"1".repeat(65),
        ] {
            assert_eq!(Net::parse(text), Err(NetError::NotANetwork), "{text:?}");
        }
    }

    #[test]
    fn host_bits_are_refused_with_the_network_meant() {
        for (text, meant) in [
            ("10.0.0.5/8", "10.0.0.0/8"),
            ("192.168.1.1/24", "192.168.1.0/24"),
            ("1.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::1/32", "2001:db8::/32"),
            ("::ffff:10.0.0.5/104", "10.0.0.0/8"),
        ] {
            match Net::parse(text) {
                Err(NetError::HostBits { network }) => assert_eq!(network.to_string(), meant),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn addresses_in_networks() {
        let cases: &[(&str, &str, bool)] = &[
            ("192.168.1.0/24", "192.168.1.77", true),
            ("192.168.1.0/24", "192.168.2.1", false),
            ("192.168.1.0/24", "::ffff:192.168.1.77", true),
            ("192.168.1.0/24", "::ffff:192.168.2.1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.0/104", "10.9.8.7", true),
            ("2001:db8::/48", "2001:db8:0:1::5", true),
            ("2001:db8::/48", "2001:db8:1::5", false),
            ("::/0", "10.0.0.1", false),
            ("::/0", "::ffff:10.0.0.1", false),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("0.0.0.0/0", "::ffff:203.0.113.1", true),
        ];
        for (outer, ip, want) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(net(outer).contains_addr(ip), *want, "{ip} in {outer}");
        }
    }

    #[test]
    fn containment() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.0.0.0/8", true),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "10.1.0.0/16", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "0.0.0.0/0", false),
            ("10.0.0.0/8", "10.0.0.0/7", false),
            ("0.0.0.0/0", "0.0.0.0/0", true),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::/0", false),
            ("::/0", "10.0.0.1", false),
            ("::/0", "::ffff:10.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("10.0.0.0/8", "::ffff:11.0.0.1", false),
            ("::ffff:0:0/96", "192.0.2.1", true),
            ("2001:db8::/32", "2001:db8:ffff::/48", true),
            ("2001:db8::/32", "2001:db9::", false),
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.2", false),
        ];
        for (outer, inner, want) in cases {
            assert_eq!(
                net(outer).contains(&net(inner)),
                *want,
                "{inner} in {outer}"
            );
        }
    }
}
