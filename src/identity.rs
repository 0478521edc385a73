//! Who an agent is: bearer tokens stored as SHA-256 hashes, checked in constant time.
//!
//! The config never holds a token, only its hash, so a leaked config does not leak access.
//! A presented token is hashed once and compared against every known hash without stopping
//! early, so the time taken says nothing about which identity (if any) came close.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;

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
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub name: Arc<str>,
    pub tokens: Vec<TokenHash>,
    /// Where the identity's name is in the config file (for error messages).
    pub span: Range<usize>,
}

/// An authenticated caller, as the rest of the request path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: Arc<str>,
    /// The address the caller connects from (`None` outside a connection, e.g. `explain`).
    pub source: Option<IpAddr>,
}

impl Identity {
    /// An identity by name, with no source address.
    pub fn named(name: &str) -> Identity {
        Identity {
            name: name.into(),
            source: None,
        }
    }
}

/// All token hashes, ready for lookups.
#[derive(Debug, Default)]
pub struct TokenTable {
    entries: Vec<(TokenHash, Arc<str>)>,
}

impl TokenTable {
    pub fn new(identities: &[IdentityConfig]) -> TokenTable {
        let entries = identities
            .iter()
            .flat_map(|i| i.tokens.iter().map(|t| (*t, i.name.clone())))
            .collect();
        TokenTable { entries }
    }

    /// The identity a presented bearer token belongs to. Compares against every entry in
    /// constant time per entry and never returns early.
    pub fn authenticate(&self, token: &[u8]) -> Option<Identity> {
        let presented = TokenHash::of(token);
        let mut found: Option<&Arc<str>> = None;
        for (hash, name) in &self.entries {
            let equal: bool = hash.0.ct_eq(&presented.0).into();
            if equal && found.is_none() {
                found = Some(name);
            }
        }
        found.map(|name| Identity {
            name: name.clone(),
            source: None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
            span: 0..0,
        }]);
        assert_eq!(
            table.authenticate(token.as_bytes()).unwrap().name.as_ref(),
            "agent"
        );
        assert!(table.authenticate(b"mcpgw_wrong").is_none());
        assert!(table.authenticate(b"").is_none());
    }

    #[test]
    fn hash_text_must_be_32_bytes_of_hex() {
        assert!(TokenHash::from_hex("abc").is_err());
        assert!(TokenHash::from_hex(&"zz".repeat(32)).is_err());
        assert!(TokenHash::from_hex(&"ab".repeat(31)).is_err());
        assert!(TokenHash::from_hex(&"ab".repeat(32)).is_ok());
    }
}
