//! Slowing down password guessing. Failed logins are counted per account and per client address
//! in memory (each node counts its own); past a threshold within a window, further attempts are
//! refused at once — without checking the password — for a delay that doubles with every further
//! failure, up to a cap. A successful login clears the account's count.
//!
//! The address threshold is four times the account threshold: several people behind one NAT
//! should not lock each other out after a few typos.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::ThrottleConfig;

/// Entries kept at most; past this, expired entries are dropped, then the oldest.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first_failure: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

/// Failure counters; `std`-style mutex because nothing async happens while it is held.
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(username: &str, address: Option<IpAddr>) -> Vec<(Key, u32)> {
        let mut keys = vec![(Key::Account(username.to_ascii_lowercase()), 1)];
        if let Some(address) = address {
            keys.push((Key::Address(address), 4));
        }
        keys
    }

    /// `Err(wait)` while the account or the address is delayed.
    pub fn check(&self, username: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let entries = self.entries.lock();
        let wait = Self::keys(username, address)
            .into_iter()
            .filter_map(|(key, _)| entries.get(&key)?.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed login.
    pub fn failed(&self, username: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let config = self.config;
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now.duration_since(e.first_failure) < config.window);
        }
        for (key, factor) in Self::keys(username, address) {
            let entry = entries.entry(key).or_insert(Entry {
                failures: 0,
                first_failure: now,
                blocked_until: None,
            });
            if now.duration_since(entry.first_failure) >= config.window {
                *entry = Entry {
                    failures: 0,
                    first_failure: now,
                    blocked_until: None,
                };
            }
            entry.failures = entry.failures.saturating_add(1);
            let threshold = config.max_failures.saturating_mul(factor).max(1);
            if entry.failures >= threshold {
                let doublings = (entry.failures - threshold).min(20);
                let delay = config
                    .base_delay
                    .saturating_mul(1 << doublings)
                    .min(config.max_delay);
                entry.blocked_until = Some(now + delay);
            }
        }
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn succeeded(&self, username: &str) {
        self.entries
            .lock()
            .remove(&Key::Account(username.to_ascii_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            max_failures: 3,
            ..ThrottleConfig::default()
        })
    }

    #[test]
    fn an_account_is_delayed_after_the_threshold_and_the_delay_doubles() {
        let throttle = throttle();
        for _ in 0..2 {
            throttle.failed("ann", None);
        }
        assert!(throttle.check("ann", None).is_ok(), "below the threshold");
        throttle.failed("ann", None);
        let first = throttle.check("ann", None).expect_err("at the threshold");
        throttle.failed("ann", None);
        let second = throttle.check("ann", None).expect_err("past the threshold");
        assert!(second > first, "the delay grows: {first:?} then {second:?}");
        assert!(
            throttle.check("bob", None).is_ok(),
            "other accounts are not delayed"
        );
        throttle.succeeded("ann");
        assert!(
            throttle.check("ann", None).is_ok(),
            "a success clears the account"
        );
    }

    #[test]
    fn an_address_is_delayed_after_failures_across_many_accounts() {
        let throttle = throttle();
        let address: IpAddr = [10, 0, 0, 1].into();
        for i in 0..12 {
            throttle.failed(&format!("user{i}"), Some(address));
        }
        assert!(
            throttle.check("fresh", Some(address)).is_err(),
            "the address itself is delayed"
        );
        assert!(
            throttle.check("fresh", Some([10, 0, 0, 2].into())).is_ok(),
            "other addresses are not"
        );
    }
}
