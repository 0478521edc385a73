//! Authentication: `Authorization: Bearer TOKEN` and/or a verified client certificate, from
//! a source address -> [`Identity`], with failed attempts rate-limited per source address.
//! Which credentials name which identity is [`TokenTable::resolve`]'s business.
//!
//! A source address that keeps presenting bad tokens gets 429 before its token is even
//! looked at, so guessing is slow and cheap for us. Only failures count: an agent that
//! authenticates correctly is never slowed down by this limiter. The per-address state is
//! pruned regularly so a flood of addresses cannot grow it without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::HeaderMap;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::identity::{Identity, PeerCert, Refusal, TokenTable, TrustId};

/// Why a request was not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that matches no identity (or a malformed header).
    Invalid,
    /// Credentials of `identity` that are not accepted here; `reason` is the log word
    /// (`outside-networks`, `client-cert-required`, ...). Answered like `Invalid`.
    Refused {
        identity: Arc<str>,
        reason: &'static str,
    },
    /// Too many failures from this address; retry after the duration.
    Throttled(Duration),
}

/// Failed-attempt limiter per source address.
pub struct FailureLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses that ran out of failures, and until when they are refused.
    throttled: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureLimiter")
    }
}

impl FailureLimiter {
    /// Allows `per_minute` failures a minute per address, all of them at once at most.
    pub fn new(per_minute: u32) -> FailureLimiter {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        FailureLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)),
            throttled: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// How long `addr` is still refused, if it is.
    fn throttled_for(&self, addr: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let map = self.throttled.lock().ok()?;
        map.get(&addr)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Counts one failure of `addr`; returns the wait if that used up its budget.
    fn fail(&self, addr: IpAddr) -> Option<Duration> {
        let not_until = self.limiter.check_key(&addr).err()?;
        let wait = not_until
            .wait_time_from(self.clock.now())
            .max(Duration::from_secs(1));
        if let Ok(mut map) = self.throttled.lock() {
            map.insert(addr, Instant::now() + wait);
        }
        Some(wait)
    }

    /// Drops state of addresses whose buckets are full again and whose refusal ended
    /// (bounded memory under floods of addresses).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = Instant::now();
        if let Ok(mut map) = self.throttled.lock() {
            map.retain(|_, until| *until > now);
        }
    }

    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// One connection's last successful authentication, so that the requests after the first
/// skip hashing the token (two SHA-256 blocks and a table lookup, about a microsecond).
///
/// A request hits only with the very same token table (a reload builds a new one, and may
/// have revoked the token) and the very same token, compared in constant time. The source
/// address and the client certificate are fixed for a connection, and the certificate's names
/// count only under the table's runtime, so they need no checking again.
#[derive(Default)]
pub struct ConnectionAuth {
    last: Mutex<Option<Remembered>>,
}

struct Remembered {
    /// Weak, so the old table is not kept alive; while this is held its address is not
    /// reused, so comparing addresses cannot mistake a new table for the old one.
    table: Weak<TokenTable>,
    /// Wiped when replaced or when the connection ends.
    token: Option<Zeroizing<Box<[u8]>>>,
    identity: Identity,
}

impl ConnectionAuth {
    fn recall(&self, table: &Arc<TokenTable>, token: Option<&[u8]>) -> Option<Identity> {
        let last = self.last.lock().ok()?;
        let remembered = last.as_ref()?;
        if !std::ptr::eq(remembered.table.as_ptr(), Arc::as_ptr(table)) {
            return None;
        }
        let same = match (remembered.token.as_deref(), token) {
            (Some(a), Some(b)) => bool::from(a.as_ref().ct_eq(b)),
            (None, None) => true,
            _ => false,
        };
        same.then(|| remembered.identity.clone())
    }

    fn remember(&self, table: &Arc<TokenTable>, token: Option<&[u8]>, identity: &Identity) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Remembered {
                table: Arc::downgrade(table),
                token: token.map(|t| Zeroizing::new(Box::from(t))),
                identity: identity.clone(),
            });
        }
    }
}

/// Checks the bearer token and client-certificate names (see [`verified_names`]) of a
/// request coming from `source` on a connection. An address that used up its failures is
/// refused before its credentials are looked at, so it cannot keep guessing; every kind of
/// failure counts.
pub fn authenticate(
    headers: &HeaderMap,
    source: IpAddr,
    cert_names: &[Box<str>],
    tokens: &Arc<TokenTable>,
    failures: &FailureLimiter,
    connection: &ConnectionAuth,
) -> Result<Identity, AuthError> {
    if let Some(wait) = failures.throttled_for(source) {
        return Err(AuthError::Throttled(wait));
    }
    let token = bearer_token(headers);
    if let Some(identity) = connection.recall(tokens, token) {
        return Ok(identity);
    }
    let refusal = match tokens.resolve(token, source, cert_names) {
        Ok(identity) => {
            connection.remember(tokens, token, &identity);
            return Ok(identity);
        }
        Err(r) => r,
    };
    if let Some(wait) = failures.fail(source) {
        return Err(AuthError::Throttled(wait));
    }
    Err(match refusal {
        Refusal::Missing => AuthError::Missing,
        Refusal::Invalid => AuthError::Invalid,
        Refusal::Refused { identity, reason } => AuthError::Refused { identity, reason },
    })
}

/// The names of a connection's client certificate, if the running config still trusts the
/// CA bundle it was verified against (`trust`); none otherwise.
pub fn verified_names(peer: Option<&PeerCert>, trust: Option<TrustId>) -> &[Box<str>] {
    match (peer, trust) {
        (Some(p), Some(t)) if p.trust == t => &p.names,
        _ => &[],
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        // Two Authorization headers: ambiguous, so neither counts.
        return None;
    }
    let bytes = value.as_bytes();
    if bytes.len() < 7 || !bytes[..7].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = bytes[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{IdentityConfig, TokenHash};

    fn table() -> Arc<TokenTable> {
        table_of(&[("agent", "s3cret")])
    }

    fn table_of(entries: &[(&str, &str)]) -> Arc<TokenTable> {
        let identities: Vec<IdentityConfig> = entries
            .iter()
            .map(|(name, token)| IdentityConfig {
                name: (*name).into(),
                tokens: vec![TokenHash::of(token.as_bytes())],
                ..IdentityConfig::default()
            })
            .collect();
        Arc::new(TokenTable::new(&identities))
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_tokens_authenticate() {
        let (t, f) = (table(), FailureLimiter::new(100));
        let c = ConnectionAuth::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            authenticate(&headers(&["Bearer s3cret"]), ip, &[], &t, &f, &c)
                .unwrap()
                .name
                .as_ref(),
            "agent"
        );
        assert_eq!(
            authenticate(&headers(&["bearer  s3cret "]), ip, &[], &t, &f, &c)
                .unwrap()
                .name
                .as_ref(),
            "agent"
        );
        assert_eq!(
            authenticate(&headers(&[]), ip, &[], &t, &f, &c),
            Err(AuthError::Missing)
        );
        assert_eq!(
            authenticate(&headers(&["Bearer nope"]), ip, &[], &t, &f, &c),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            authenticate(&headers(&["Basic s3cret"]), ip, &[], &t, &f, &c),
            Err(AuthError::Missing)
        );
        assert_eq!(
            authenticate(
                &headers(&["Bearer s3cret", "Bearer s3cret"]),
                ip,
                &[],
                &t,
                &f,
                &c
            ),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn failures_are_throttled_per_address() {
        let (t, f) = (table(), FailureLimiter::new(3));
        let c = ConnectionAuth::default();
        let bad: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(
                authenticate(&headers(&["Bearer x"]), bad, &[], &t, &f, &c),
                Err(AuthError::Invalid)
            );
        }
        assert!(matches!(
            authenticate(&headers(&["Bearer x"]), bad, &[], &t, &f, &c),
            Err(AuthError::Throttled(_))
        ));
        // Once throttled, not even the right token is looked at; other addresses are unaffected.
        assert!(matches!(
            authenticate(&headers(&["Bearer s3cret"]), bad, &[], &t, &f, &c),
            Err(AuthError::Throttled(_))
        ));
        assert_eq!(
            authenticate(&headers(&["Bearer x"]), other, &[], &t, &f, &c),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_connection_reuses_only_the_same_token_under_the_same_table() {
        let f = FailureLimiter::new(100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let c = ConnectionAuth::default();
        let name = |r: Result<Identity, AuthError>| r.map(|i| i.name.to_string());
        let before = table_of(&[("a", "token-a"), ("b", "token-b")]);
        let auth =
            |h: &[&str], t: &Arc<TokenTable>| name(authenticate(&headers(h), ip, &[], t, &f, &c));
        assert_eq!(auth(&["Bearer token-a"], &before), Ok("a".into()));
        assert_eq!(auth(&["Bearer token-a"], &before), Ok("a".into()));
        // Another token on the same connection is looked up, not taken for the remembered one.
        assert_eq!(auth(&["Bearer token-b"], &before), Ok("b".into()));
        assert_eq!(auth(&["Bearer token-"], &before), Err(AuthError::Invalid));
        assert_eq!(auth(&[], &before), Err(AuthError::Missing));
        assert_eq!(auth(&["Bearer token-b"], &before), Ok("b".into()));
        // A reload that revokes the token: the new table decides, whatever was remembered.
        let after = table_of(&[("a", "token-a")]);
        assert_eq!(auth(&["Bearer token-b"], &after), Err(AuthError::Invalid));
        assert_eq!(auth(&["Bearer token-a"], &after), Ok("a".into()));
        // The remembered table is dropped; a new table decides, wherever it was allocated.
        drop((before, after));
        let again = table_of(&[("c", "token-a")]);
        assert_eq!(auth(&["Bearer token-a"], &again), Ok("c".into()));
    }
}
