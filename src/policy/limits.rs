//! Rate limits: governor token buckets, one per counter, keyed by identity or shared.
//!
//! A limit of `max` calls `per` window is a bucket that holds `max` calls and refills one call
//! every `window / max`. So "10 a minute" lets a burst of 10 through at once and then one call
//! every 6 seconds: the long-run rate is exactly `max` per window, and no burst exceeds `max`.

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
    /// One bucket for every caller together.
    Global,
}

/// What a limit says, independent of its state (two equal specs may share a counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    pub max: u32,
    pub per: Window,
    pub scope: Scope,
}

enum Buckets {
    PerIdentity(DefaultKeyedRateLimiter<Arc<str>>),
    Global(DefaultDirectRateLimiter),
}

/// A limit with its buckets.
pub struct Limiter {
    pub spec: LimitSpec,
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
    pub fn new(spec: LimitSpec, rule: RuleName) -> Limiter {
        let max = NonZeroU32::new(spec.max).unwrap_or(NonZeroU32::MIN);
        // Refill period = window / max; at least 1 ns so that huge maxima still form a quota.
        let period = (spec.per.duration() / max.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(max))
            .allow_burst(max);
        let buckets = match spec.scope {
            Scope::Identity => Buckets::PerIdentity(DefaultKeyedRateLimiter::keyed(quota)),
            Scope::Global => Buckets::Global(DefaultDirectRateLimiter::direct(quota)),
        };
        Limiter {
            spec,
            rule,
            buckets,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one call from the bucket, or says how long until one is available.
    pub fn check(&self, identity: &Identity) -> Result<(), Duration> {
        let outcome = match &self.buckets {
            Buckets::PerIdentity(limiter) => limiter.check_key(&identity.name),
            Buckets::Global(limiter) => limiter.check(),
        };
        outcome.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}
