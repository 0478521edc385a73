//! Who an agent is: bearer tokens stored as SHA-256 hashes, checked in constant time.
//!
//! The config never holds a token, only its hash, so a leaked config does not leak access.
//! A presented token is hashed once, looked up by the hash's first bytes (which nobody can
//! choose), and compared in constant time against the full hashes found there, so the time
//! taken says nothing about which identity (if any) came close.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;

use crate::policy::args::net::Net;

/// The SHA-256 of a bearer token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({}…)", &hex::encode(self.0)[..8])
    }
}

impl TokenHash {
    /// Hashes a presented token.
    pub fn of(token: &[u8]) -> TokenHash {
        let digest = ring::digest::digest(&ring::digest::SHA256, token);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        TokenHash(out)
    }

    /// Reads the 64 hex digits written in the config.
    pub fn from_hex(text: &str) -> Result<TokenHash, String> {
        let bytes = hex::decode(text.trim()).map_err(|_| {
            "token_sha256 must be 64 hex digits (the SHA-256 of the token, as `mcpgw token new` prints)".to_string()
        })?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            "token_sha256 must be 64 hex digits (32 bytes); a token itself does not belong in the config".to_string()
        })?;
        Ok(TokenHash(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// One named identity from the config.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub name: Arc<str>,
    pub tokens: Vec<TokenHash>,
    /// Source networks the identity may authenticate from; empty: any address.
    pub networks: Vec<Net>,
    /// The client-certificate name (lowercase) that authenticates this identity: a DNS
    /// SAN entry of the certificate, or its subject CN when it has no DNS SAN entry.
    pub client_cert: Option<Arc<str>>,
    /// A token alone is not enough: the request must also come with the client certificate.
    pub require_client_cert: bool,
    /// The `[profiles.NAME]` policy this identity is decided under; `None`: `[policy]`.
    pub policy: Option<Arc<str>>,
    /// Where the identity's name is in the config file (for error messages).
    pub span: Range<usize>,
}

/// An authenticated caller, as the rest of the request path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: Arc<str>,
    /// The address the caller connects from (`None` outside a connection, e.g. `explain`).
    pub source: Option<IpAddr>,
    /// The `[profiles.NAME]` policy that decides for this identity; `None`: `[policy]`.
    pub profile: Option<Arc<str>>,
}

impl Identity {
    /// An identity by name, with no source address, under `[policy]`.
    pub fn named(name: &str) -> Identity {
        Identity {
            name: name.into(),
            source: None,
            profile: None,
        }
    }
}

/// Names a client CA bundle: the SHA-256 over its certificates. A connection's certificate
/// counts only while the running config trusts the bundle it was verified against, so a
/// reload that changes `client_ca` also ends certificate logins on open connections.
pub type TrustId = [u8; 32];

/// The verified client certificate of a TLS connection, as far as identities care (made only
/// from a chain `server::tls::ClientTrust` verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// Lowercase names: the DNS SAN entries, or the subject CN when there is none.
    pub names: Vec<Box<str>>,
    /// The CA bundle the certificate chain was verified against in the handshake.
    pub trust: TrustId,
}

/// Why no identity was found for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credential at all (no bearer token and no certificate that names an identity).
    Missing,
    /// A bearer token that matches no identity.
    Invalid,
    /// Credentials that point at `identity` but are not accepted; `reason` is the log word
    /// (`outside-networks`, `client-cert-required`, `identity-conflict`,
    /// `ambiguous-client-cert`).
    Refused {
        identity: Arc<str>,
        reason: &'static str,
    },
}

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    networks: Vec<Net>,
    client_cert: Option<Arc<str>>,
    /// Both the token and the certificate are needed.
    require_client_cert: bool,
    profile: Option<Arc<str>>,
}

/// Every identity with its token hashes, networks and certificate name, ready for lookups.
#[derive(Debug, Default)]
pub struct TokenTable {
    /// Token hashes by their first 8 bytes, each with the index of its identity in
    /// `identities`, in config order.
    entries: HashMap<u64, Vec<(TokenHash, usize)>>,
    identities: Vec<Entry>,
}

/// The map key of a token hash: its first 8 bytes.
fn bucket_of(hash: &TokenHash) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&hash.0[..8]);
    u64::from_le_bytes(prefix)
}

impl TokenTable {
    pub fn new(identities: &[IdentityConfig]) -> TokenTable {
        let mut entries: HashMap<u64, Vec<(TokenHash, usize)>> = HashMap::new();
        for (n, identity) in identities.iter().enumerate() {
            for token in &identity.tokens {
                entries
                    .entry(bucket_of(token))
                    .or_default()
                    .push((*token, n));
            }
        }
        let identities = identities
            .iter()
            .map(|i| Entry {
                name: i.name.clone(),
                networks: i.networks.clone(),
                client_cert: i.client_cert.clone(),
                require_client_cert: i.require_client_cert && !i.tokens.is_empty(),
                profile: i.policy.clone(),
            })
            .collect();
        TokenTable {
            entries,
            identities,
        }
    }

    /// The index of the identity a presented bearer token belongs to, at the same cost for
    /// one identity or thousands.
    ///
    /// The map lookup by the hash's first bytes is not constant-time, and need not be: what
    /// it can reveal is whether the SHA-256 of a guess shares 8 bytes with a stored hash,
    /// and nobody can choose a hash's bytes, so timing teaches nothing about any token. The
    /// full hashes in the bucket (almost always one) are then compared in constant time,
    /// without an early exit.
    fn find_token(&self, token: &[u8]) -> Option<usize> {
        let presented = TokenHash::of(token);
        let bucket = self.entries.get(&bucket_of(&presented))?;
        let mut found: Option<usize> = None;
        for (hash, index) in bucket {
            let equal: bool = hash.0.ct_eq(&presented.0).into();
            if equal && found.is_none() {
                found = Some(*index);
            }
        }
        found
    }

    /// The identity whose `client_cert` is one of `names`. A certificate naming two
    /// identities is refused: which one it meant cannot be known.
    fn find_cert(&self, names: &[Box<str>]) -> Result<Option<usize>, Refusal> {
        let mut found = None;
        for (index, entry) in self.identities.iter().enumerate() {
            let Some(wanted) = &entry.client_cert else {
                continue;
            };
            if names.iter().any(|n| **n == **wanted) {
                if found.is_some() {
                    return Err(Refusal::Refused {
                        identity: entry.name.clone(),
                        reason: "ambiguous-client-cert",
                    });
                }
                found = Some(index);
            }
        }
        Ok(found)
    }

    /// The identity a presented bearer token belongs to (networks and certificates aside).
    pub fn authenticate(&self, token: &[u8]) -> Option<Identity> {
        self.find_token(token).map(|i| self.identity(i, None))
    }

    fn identity(&self, index: usize, source: Option<IpAddr>) -> Identity {
        let entry = &self.identities[index];
        Identity {
            name: entry.name.clone(),
            source,
            profile: entry.profile.clone(),
        }
    }

    /// Resolves the caller of one request from its bearer token (if any), its source address
    /// and the names of its verified client certificate (empty without one).
    ///
    /// * A token that matches nobody is `Invalid`, whatever the certificate says.
    /// * A token and a certificate that name two different identities are refused
    ///   (`identity-conflict`): one request is one identity.
    /// * A certificate alone authenticates its identity, unless that identity has tokens
    ///   and `require_client_cert` (then both are needed).
    /// * A token of an identity with `require_client_cert` needs that identity's certificate.
    /// * The identity must come from one of its networks, when it has any.
    pub fn resolve(
        &self,
        token: Option<&[u8]>,
        source: IpAddr,
        cert_names: &[Box<str>],
    ) -> Result<Identity, Refusal> {
        let by_token = token.map(|t| self.find_token(t));
        let by_cert = self.find_cert(cert_names)?;
        let refused = |index: usize, reason| Refusal::Refused {
            identity: self.identities[index].name.clone(),
            reason,
        };
        let index = match (by_token, by_cert) {
            (Some(None), _) => return Err(Refusal::Invalid),
            (Some(Some(t)), Some(c)) if t != c => return Err(refused(t, "identity-conflict")),
            (Some(Some(t)), _) => t,
            (None, Some(c)) => c,
            (None, None) => return Err(Refusal::Missing),
        };
        let entry = &self.identities[index];
        let source = source.to_canonical();
        if !entry.networks.is_empty() && !entry.networks.iter().any(|n| n.contains_addr(source)) {
            return Err(refused(index, "outside-networks"));
        }
        if entry.require_client_cert {
            match (by_token, by_cert) {
                (Some(Some(_)), Some(_)) => {}
                (Some(Some(_)), None) => return Err(refused(index, "client-cert-required")),
                _ => return Err(Refusal::Missing),
            }
        }
        Ok(self.identity(index, Some(source)))
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }
}

/// Fills `buf` from the operating system's secure random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), String> {
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| "the system random source failed".to_string())
}

/// A new random token (256 bits, hex with an `mcpgw_` prefix so it is recognisable in
/// secret scanners) and its hash.
pub fn new_token() -> Result<(String, TokenHash), String> {
    let mut raw = [0u8; 32];
    random_bytes(&mut raw)?;
    let token = format!("mcpgw_{}", hex::encode(raw));
    let hash = TokenHash::of(token.as_bytes());
    Ok((token, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with("mcpgw_") && token.len() == 6 + 64);
        let table = TokenTable::new(&[IdentityConfig {
            name: "agent".into(),
            tokens: vec![TokenHash::from_hex(&hash.to_hex()).unwrap()],
            ..IdentityConfig::default()
        }]);
        assert_eq!(
            table.authenticate(token.as_bytes()).unwrap().name.as_ref(),
            "agent"
        );
        assert!(table.authenticate(b"mcpgw_wrong").is_none());
        assert!(table.authenticate(b"").is_none());
    }

    #[test]
    fn every_token_of_many_identities_finds_its_own() {
        let configs: Vec<IdentityConfig> = (0..1000)
            .map(|n| IdentityConfig {
                name: format!("agent-{n}").into(),
                tokens: vec![TokenHash::of(format!("token-{n}").as_bytes())],
                ..IdentityConfig::default()
            })
            .collect();
        let table = TokenTable::new(&configs);
        for n in [0, 1, 499, 999] {
            let found = table.authenticate(format!("token-{n}").as_bytes());
            assert_eq!(
                found.map(|i| i.name.to_string()),
                Some(format!("agent-{n}"))
            );
        }
        assert!(table.authenticate(b"token-1000").is_none());
    }

    #[test]
    fn a_hash_sharing_the_map_key_does_not_match() {
        // Same first 8 bytes as the real token's hash, different after: only the full,
        // constant-time compare tells them apart, whichever comes first.
        let real = TokenHash::of(b"the-token");
        let mut near = real;
        near.0[31] ^= 1;
        let table = TokenTable::new(&[
            IdentityConfig {
                name: "near".into(),
                tokens: vec![near],
                ..IdentityConfig::default()
            },
            IdentityConfig {
                name: "real".into(),
                tokens: vec![real],
                ..IdentityConfig::default()
            },
        ]);
        assert_eq!(
            table.authenticate(b"the-token").map(|i| i.name.to_string()),
            Some("real".to_string())
        );
    }

    fn nets(list: &[&str]) -> Vec<Net> {
        list.iter().map(|n| Net::parse(n).unwrap()).collect()
    }

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|n| Box::from(*n)).collect()
    }

    fn table() -> TokenTable {
        TokenTable::new(&[
            IdentityConfig {
                name: "lan".into(),
                tokens: vec![TokenHash::of(b"t-lan")],
                networks: nets(&["192.168.1.0/24", "2001:db8::/48"]),
                policy: Some("readonly".into()),
                ..IdentityConfig::default()
            },
            IdentityConfig {
                name: "anywhere".into(),
                tokens: vec![TokenHash::of(b"t-any1"), TokenHash::of(b"t-any2")],
                ..IdentityConfig::default()
            },
            IdentityConfig {
                name: "agent1".into(),
                client_cert: Some("agent1.example.net".into()),
                networks: nets(&["10.0.0.0/8"]),
                ..IdentityConfig::default()
            },
            IdentityConfig {
                name: "both".into(),
                tokens: vec![TokenHash::of(b"t-both")],
                client_cert: Some("both.example.net".into()),
                require_client_cert: true,
                ..IdentityConfig::default()
            },
            IdentityConfig {
                name: "either".into(),
                tokens: vec![TokenHash::of(b"t-either")],
                client_cert: Some("either.example.net".into()),
                ..IdentityConfig::default()
            },
        ])
    }

    /// The identity name, or the refusal in log words.
    fn resolve(t: &TokenTable, token: Option<&str>, source: &str, certs: &[&str]) -> String {
        let source: IpAddr = source.parse().unwrap();
        match t.resolve(token.map(str::as_bytes), source, &names(certs)) {
            Ok(i) => {
                assert_eq!(i.source, Some(source.to_canonical()));
                i.name.to_string()
            }
            Err(Refusal::Missing) => "missing".into(),
            Err(Refusal::Invalid) => "invalid".into(),
            Err(Refusal::Refused { identity, reason }) => format!("{reason} {identity}"),
        }
    }

    #[test]
    fn networks_restrict_where_an_identity_may_come_from() {
        let t = table();
        let cases: &[(&str, &str)] = &[
            ("192.168.1.20", "lan"),
            ("192.168.2.20", "outside-networks lan"),
            // IPv4-mapped IPv6 peers are their IPv4 address.
            ("::ffff:192.168.1.20", "lan"),
            ("::ffff:192.168.2.20", "outside-networks lan"),
            ("2001:db8:0:42::1", "lan"),
            ("2001:db8:1::1", "outside-networks lan"),
            ("10.1.1.1", "outside-networks lan"),
        ];
        for (source, want) in cases {
            assert_eq!(resolve(&t, Some("t-lan"), source, &[]), *want, "{source}");
        }
        // Several tokens per identity; no networks means any address.
        assert_eq!(resolve(&t, Some("t-any1"), "203.0.113.7", &[]), "anywhere");
        assert_eq!(
            resolve(&t, Some("t-any2"), "2001:db8:9::1", &[]),
            "anywhere"
        );
        assert_eq!(resolve(&t, Some("nope"), "192.168.1.20", &[]), "invalid");
        assert_eq!(resolve(&t, None, "192.168.1.20", &[]), "missing");
        // The identity carries its profile name.
        let lan = t
            .resolve(Some(b"t-lan"), "192.168.1.1".parse().unwrap(), &[])
            .unwrap();
        assert_eq!(lan.profile.as_deref(), Some("readonly"));
        assert_eq!(t.authenticate(b"t-any1").unwrap().profile, None);
    }

    #[test]
    fn client_certificates_name_identities() {
        let t = table();
        let cases: &[(Option<&str>, &str, &[&str], &str)] = &[
            // The certificate alone, from inside (and outside) the identity's networks.
            (None, "10.0.0.9", &["agent1.example.net"], "agent1"),
            (
                None,
                "::ffff:10.0.0.9",
                &["x.example.net", "agent1.example.net"],
                "agent1",
            ),
            (
                None,
                "192.0.2.1",
                &["agent1.example.net"],
                "outside-networks agent1",
            ),
            // A certificate that names nobody is no credential.
            (None, "10.0.0.9", &["agent9.example.net"], "missing"),
            (
                Some("t-any1"),
                "10.0.0.9",
                &["agent9.example.net"],
                "anywhere",
            ),
            // A bad token is a failure whatever the certificate says.
            (Some("nope"), "10.0.0.9", &["agent1.example.net"], "invalid"),
            // A token and a certificate of two identities: refused.
            (
                Some("t-any1"),
                "10.0.0.9",
                &["agent1.example.net"],
                "identity-conflict anywhere",
            ),
            // require_client_cert: both, not either.
            (Some("t-both"), "192.0.2.1", &["both.example.net"], "both"),
            (
                Some("t-both"),
                "192.0.2.1",
                &[],
                "client-cert-required both",
            ),
            (None, "192.0.2.1", &["both.example.net"], "missing"),
            // Without it: either one.
            (Some("t-either"), "192.0.2.1", &[], "either"),
            (None, "192.0.2.1", &["either.example.net"], "either"),
            (
                Some("t-either"),
                "192.0.2.1",
                &["either.example.net"],
                "either",
            ),
            // One certificate naming two identities is ambiguous.
            (
                None,
                "10.0.0.9",
                &["agent1.example.net", "either.example.net"],
                "ambiguous-client-cert either",
            ),
        ];
        for (token, source, certs, want) in cases {
            assert_eq!(
                resolve(&t, *token, source, certs),
                *want,
                "{token:?} from {source} with {certs:?}"
            );
        }
    }

    #[test]
    fn hash_text_must_be_32_bytes_of_hex() {
        assert!(TokenHash::from_hex("abc").is_err());
        assert!(TokenHash::from_hex(&"zz".repeat(32)).is_err());
        assert!(TokenHash::from_hex(&"ab".repeat(31)).is_err());
        assert!(TokenHash::from_hex(&"ab".repeat(32)).is_ok());
    }
}
