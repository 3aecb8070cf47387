//! How often the settings page lets anyone make it spend something.
//!
//! Opening the page exchanges the context key with MoySklad (a signed Vendor API call, on the
//! app's quota) and, when MoySklad accepts it, writes to the store. Anyone can send a URL with a
//! made-up key, so exchanges are limited per client address and in total, before anything is
//! asked or stored. A form's Check and Save call the vendor with the typed credentials (and a
//! Save calls MoySklad), so each session has its own allowance too: a stolen or scripted
//! session cannot turn the page into a key-guessing oracle. All are governor GCRA limiters.
//!
//! The client address is the TCP peer, which the server hands the page with each request.
//! `X-Forwarded-For` is not read: anyone can write it. Without an address every request shares
//! one address bucket (stricter, never looser).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};

/// A limit: `burst` at once, then one every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

impl Rate {
    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.every)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// Page opens (context exchanges) from one address: a person opens the settings a few times
/// in a row at most; an office behind one NAT address still gets one every 6 s after that.
pub const CONTEXT_PER_ADDRESS: Rate = Rate {
    burst: 10,
    every: Duration::from_secs(6),
};
/// Page opens from all addresses together: what the app's Vendor API quota should ever see
/// from the settings page (MoySklad's own limits are per app and undocumented for it).
pub const CONTEXT_TOTAL: Rate = Rate {
    burst: 30,
    every: Duration::from_secs(1),
};
/// Check and Save posts of one session: a few tries to get a key right, then one every 10 s.
pub const POSTS_PER_SESSION: Rate = Rate {
    burst: 5,
    every: Duration::from_secs(10),
};

/// Keyed limiters forget idle keys every this many checks (their state is then the same as
/// a fresh key's), so a stream of new addresses or sessions cannot grow them without bound.
const FORGET_EVERY: u32 = 1024;

/// What an address is limited as: an IPv6 client usually holds a whole /64, so that is one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddrKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
    /// No peer address known: one shared bucket.
    Unknown,
}

impl AddrKey {
    fn of(addr: Option<IpAddr>) -> AddrKey {
        match addr {
            None => AddrKey::Unknown,
            Some(IpAddr::V4(v4)) => AddrKey::V4(v4),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4),
                None => AddrKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why an attempt was refused, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

pub struct PageLimits {
    context_per_address: DefaultKeyedRateLimiter<AddrKey>,
    context_total: DefaultDirectRateLimiter,
    posts_per_session: DefaultKeyedRateLimiter<[u8; 32]>,
    checks: AtomicU32,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits::new(CONTEXT_PER_ADDRESS, CONTEXT_TOTAL, POSTS_PER_SESSION)
    }
}

impl PageLimits {
    pub fn new(per_address: Rate, total: Rate, per_session: Rate) -> PageLimits {
        PageLimits {
            context_per_address: RateLimiter::keyed(per_address.quota()),
            context_total: RateLimiter::direct(total.quota()),
            posts_per_session: RateLimiter::keyed(per_session.quota()),
            checks: AtomicU32::new(0),
        }
    }

    /// One context exchange for a client at `addr` (`None`: unknown).
    pub fn context(&self, addr: Option<IpAddr>) -> Result<(), Refused> {
        self.housekeeping();
        // The address first: a client over its own limit does not use up everyone's.
        self.context_per_address
            .check_key(&AddrKey::of(addr))
            .map_err(refused)?;
        self.context_total.check().map_err(refused)
    }

    /// One Check or Save of the session whose id hashes to `session`.
    pub fn post(&self, session: &[u8; 32]) -> Result<(), Refused> {
        self.housekeeping();
        self.posts_per_session.check_key(session).map_err(refused)
    }

    fn housekeeping(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.context_per_address.retain_recent();
            self.context_per_address.shrink_to_fit();
            self.posts_per_session.retain_recent();
            self.posts_per_session.shrink_to_fit();
        }
    }
}

fn refused(not_until: NotUntil<<DefaultClock as Clock>::Instant>) -> Refused {
    Refused {
        retry_after: not_until.wait_time_from(DefaultClock::default().now()),
    }
}

/// `Retry-After` seconds for a wait (at least 1: "0" would invite an immediate retry).
pub fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn slow(burst: u32) -> Rate {
        Rate {
            burst,
            every: Duration::from_secs(3600),
        }
    }

    #[test]
    fn context_exchanges_are_limited_per_address_and_in_total() {
        let limits = PageLimits::new(slow(2), slow(5), slow(1));
        assert!(limits.context(ip("192.0.2.1")).is_ok());
        assert!(limits.context(ip("192.0.2.1")).is_ok());
        let refused = limits.context(ip("192.0.2.1")).unwrap_err();
        assert!(
            refused.retry_after > Duration::from_secs(3000),
            "{refused:?}"
        );
        // Another address has its own allowance, until the total runs out.
        assert!(limits.context(ip("192.0.2.2")).is_ok());
        assert!(limits.context(ip("192.0.2.3")).is_ok());
        assert!(limits.context(ip("192.0.2.4")).is_ok());
        assert!(limits.context(ip("192.0.2.5")).is_err(), "total: 5");
    }

    #[test]
    fn an_address_over_its_limit_does_not_use_the_total() {
        let limits = PageLimits::new(slow(1), slow(2), slow(1));
        assert!(limits.context(ip("192.0.2.1")).is_ok());
        for _ in 0..50 {
            assert!(limits.context(ip("192.0.2.1")).is_err());
        }
        assert!(limits.context(ip("192.0.2.2")).is_ok());
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_and_unknown_ones_share_a_bucket() {
        let limits = PageLimits::new(slow(1), slow(100), slow(1));
        assert!(limits.context(ip("2001:db8:1:2::1")).is_ok());
        assert!(
            limits.context(ip("2001:db8:1:2:ffff::9")).is_err(),
            "same /64"
        );
        assert!(limits.context(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        assert!(limits.context(ip("198.51.100.7")).is_ok());
        assert!(limits.context(ip("::ffff:198.51.100.7")).is_err());
        assert!(limits.context(None).is_ok());
        assert!(limits.context(None).is_err());
    }

    #[test]
    fn sessions_have_their_own_allowance() {
        let limits = PageLimits::new(slow(1), slow(1), slow(3));
        let (a, b) = ([1u8; 32], [2u8; 32]);
        for _ in 0..3 {
            assert!(limits.post(&a).is_ok());
        }
        assert!(limits.post(&a).is_err());
        assert!(limits.post(&b).is_ok());
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let limits = PageLimits::new(
            Rate {
                burst: 1,
                every: Duration::from_millis(1),
            },
            slow(10_000),
            slow(1),
        );
        for i in 0..1000u32 {
            let _ = limits.context(Some(IpAddr::V4(Ipv4Addr::from(i))));
        }
        assert!(limits.context_per_address.len() >= 1000);
        std::thread::sleep(Duration::from_millis(5));
        for _ in 0..FORGET_EVERY {
            let _ = limits.post(&[0u8; 32]);
        }
        assert!(limits.context_per_address.len() < 10);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_secs(6)), 6);
        assert_eq!(retry_secs(Duration::from_millis(6_001)), 7);
    }
}
