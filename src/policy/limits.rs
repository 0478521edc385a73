//! Rate limits: governor token buckets, one per counter, keyed by identity, by source
//! address, or shared by everyone.
//!
//! A limit of `max` calls `per` window is a bucket that holds `max` calls and refills one call
//! every `window / max`. So "10 a minute" lets a burst of 10 through at once and then one call
//! every 6 seconds: the long-run rate is exactly `max` per window, and no burst exceeds `max`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

use crate::identity::Identity;

use super::RuleName;

/// The window a `max` is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
}

impl Window {
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
        })
    }
}

/// Who shares a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One bucket per identity. PolicyLayer calls this `grant`.
    #[serde(alias = "grant")]
    Identity,
    /// One bucket per source address (so one compromised host cannot use up everyone's calls).
    Source,
    /// One bucket for every caller together.
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Identity => "identity",
            Scope::Source => "source",
            Scope::Global => "global",
        }
    }
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }
}

/// What a keyed bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LimitKey {
    Identity(Arc<str>),
    Source(IpAddr),
    /// A caller without a source address (only outside connections, e.g. `mcpgw explain`).
    NoSource,
}

/// What a limit says, independent of its state (two equal specs may share a counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    pub max: u32,
    pub per: Window,
    pub scope: Scope,
}

enum Buckets {
    Keyed(DefaultKeyedRateLimiter<LimitKey>),
    Global(DefaultDirectRateLimiter),
}

/// A limit with its buckets.
pub struct Limiter {
    pub spec: LimitSpec,
    /// The counter this limit counts in: limits with the same counter share these buckets,
    /// and a reload keeps the buckets of a counter whose spec did not change.
    pub counter: String,
    /// Rule name written in decisions this limit makes.
    pub rule: RuleName,
    buckets: Buckets,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("spec", &self.spec)
            .field("rule", &self.rule)
            .finish()
    }
}

impl Limiter {
    /// Builds the buckets for `spec`. `spec.max` must be at least 1 (checked by the policy
    /// compiler); a zero is treated as 1 rather than panicking.
    pub fn new(spec: LimitSpec, counter: String, rule: RuleName) -> Limiter {
        let max = NonZeroU32::new(spec.max).unwrap_or(NonZeroU32::MIN);
        // Refill period = window / max; at least 1 ns so that huge maxima still form a quota.
        let period = (spec.per.duration() / max.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(max))
            .allow_burst(max);
        let buckets = match spec.scope {
            Scope::Identity | Scope::Source => {
                Buckets::Keyed(DefaultKeyedRateLimiter::keyed(quota))
            }
            Scope::Global => Buckets::Global(DefaultDirectRateLimiter::direct(quota)),
        };
        Limiter {
            spec,
            counter,
            rule,
            buckets,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one call from the bucket, or says how long until one is available.
    pub fn check(&self, identity: &Identity) -> Result<(), Duration> {
        let outcome = match &self.buckets {
            Buckets::Keyed(limiter) => {
                let key = match (self.spec.scope, identity.source) {
                    (Scope::Source, Some(addr)) => LimitKey::Source(addr),
                    (Scope::Source, None) => LimitKey::NoSource,
                    _ => LimitKey::Identity(identity.name.clone()),
                };
                limiter.check_key(&key)
            }
            Buckets::Global(limiter) => limiter.check(),
        };
        outcome.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose buckets are full again. Memory stays bounded by the keys seen
    /// within one window, however many distinct keys come and go.
    pub fn prune(&self) {
        if let Buckets::Keyed(limiter) = &self.buckets {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys currently tracked (0 for a global limit).
    pub fn tracked_keys(&self) -> usize {
        match &self.buckets {
            Buckets::Keyed(limiter) => limiter.len(),
            Buckets::Global(_) => 0,
        }
    }
}
