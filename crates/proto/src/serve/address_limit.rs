//! `--max-per-ip`: how many connections one client address may hold open,
//! across every worker, without a lock.
//!
//! SO_REUSEPORT spreads one address's connections over all workers, and
//! behind a PROXY-protocol balancer the address is only known after the
//! header, so the count cannot live in one worker. Steering connections to
//! workers by source address (an SO_ATTACH_REUSEPORT_CBPF program) would
//! keep it per worker, but it steers by the TCP peer: behind a balancer
//! that is the balancer, so every connection would land on one worker; and
//! a socket passed by systemd is one socket, not a reuseport group.
//!
//! Instead every worker shares one table of counters indexed by a keyed
//! hash of the address ([`AddressKey`]: IPv4 whole, IPv6 by its /64). A
//! connection holds one counter from the moment its address is known until
//! it closes: one atomic add to take it, one to give it back, and nothing
//! on a connection's path when `--max-per-ip` is off.
//!
//! * **The cap is exact**: every connection of an address adds to the same
//!   counter, atomically, and one that finds it at the cap takes its add
//!   back, so an address never holds more than the cap.
//! * **Another address may share a counter** (a hash collision) and then
//!   shares its cap too: a client can be refused while its own address is
//!   below the cap, never admitted above it. The table has
//!   [`BUCKETS_PER_CONNECTION`] counters per connection the server may hold
//!   (at most [`MAX_BUCKETS`]), so with the server full of distinct
//!   addresses a counter holds on average 1/16 of a connection: a new
//!   address is refused for another's sake only when `cap` others share
//!   its counter, about one time in 16 for `--max-per-ip 1` and one in
//!   500 for 2 (fewer for more). The hash key is random per process, so nobody
//!   can choose addresses that collide with a victim's.

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counters per connection the server may hold at once.
pub const BUCKETS_PER_CONNECTION: usize = 16;

/// The most counters (16 MiB of them at 4 bytes each).
pub const MAX_BUCKETS: usize = 1 << 22;

/// The fewest counters.
pub const MIN_BUCKETS: usize = 1 << 10;

/// What `--max-per-ip` counts as one client: an IPv4 address, or an IPv6
/// address's /64 (one subscriber's network). An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, as a dual-stack listener reports IPv4 peers) is the
/// IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// An IPv4 client.
    V4(u32),
    /// The first 64 bits of an IPv6 client's address.
    V6(u64),
}

impl From<IpAddr> for AddressKey {
    fn from(addr: IpAddr) -> AddressKey {
        match addr {
            IpAddr::V4(v4) => AddressKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(u32::from(v4)),
                None => AddressKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One connection's share of its address's count, taken by
/// [`AddressLimit::try_hold`] and given back when dropped: a session holds
/// it from the moment its address is known until the engine drops the
/// session, whichever way the connection ended.
#[derive(Debug)]
pub struct Hold {
    limit: &'static AddressLimit,
    index: u32,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.limit.release(self.index);
    }
}

/// The open connections of every client address, shared by all workers.
/// It lives as long as the process (`&'static`, made once at start-up), so
/// that a [`Hold`] is one reference and an index, with no reference count
/// to touch on the per-connection path.
#[derive(Debug)]
pub struct AddressLimit {
    cap: u32,
    mask: usize,
    /// Mixed into every hash; random per process.
    salt: u64,
    counts: Box<[AtomicU32]>,
}

impl AddressLimit {
    /// At most `cap` connections per address, for a server that holds at
    /// most `max_connections` at once; the hash is salted at random.
    pub fn new(cap: NonZeroU32, max_connections: usize) -> AddressLimit {
        let salt = RandomState::new().hash_one(0x5eed_u64);
        AddressLimit::with_salt(cap, buckets_for(max_connections), salt)
    }

    /// At most `cap` connections per address, `buckets` counters (rounded
    /// up to a power of two within [`MIN_BUCKETS`]..=[`MAX_BUCKETS`]),
    /// addresses hashed with `salt` (tests use a fixed one).
    pub fn with_salt(cap: NonZeroU32, buckets: usize, salt: u64) -> AddressLimit {
        let buckets = buckets.clamp(MIN_BUCKETS, MAX_BUCKETS).next_power_of_two();
        AddressLimit {
            cap: cap.get(),
            mask: buckets - 1,
            salt,
            counts: (0..buckets).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Made once and kept for the life of the process.
    pub fn leak(self) -> &'static AddressLimit {
        Box::leak(Box::new(self))
    }

    /// The most connections one address may hold.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// How many counters the table has.
    pub fn buckets(&self) -> usize {
        self.counts.len()
    }

    /// Takes one of `addr`'s connections, or `None` if its address (or an
    /// address sharing its counter) already holds `cap`.
    pub fn try_hold(&'static self, addr: IpAddr) -> Option<Hold> {
        let index = self.index(AddressKey::from(addr));
        let count = &self.counts[index];
        // Relaxed: the counter guards no other memory; its own updates are
        // totally ordered, which is all the cap needs.
        let before = count.fetch_add(1, Ordering::Relaxed);
        if before >= self.cap {
            count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Hold {
            limit: self,
            index: index as u32,
        })
    }

    /// Connections counted against `addr`'s counter now (its own and any
    /// that share the counter).
    pub fn held(&self, addr: IpAddr) -> u32 {
        self.counts[self.index(AddressKey::from(addr))].load(Ordering::Relaxed)
    }

    fn release(&self, index: u32) {
        if let Some(count) = self.counts.get(index as usize) {
            // Never below zero (a hold is dropped once).
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
        }
    }

    fn index(&self, key: AddressKey) -> usize {
        let mut h = DefaultHasher::new();
        h.write_u64(self.salt);
        key.hash(&mut h);
        (h.finish() as usize) & self.mask
    }
}

/// Counters for a server holding at most `max_connections` at once.
pub fn buckets_for(max_connections: usize) -> usize {
    max_connections
        .saturating_mul(BUCKETS_PER_CONNECTION)
        .clamp(MIN_BUCKETS, MAX_BUCKETS)
        .next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limit(cap: u32) -> &'static AddressLimit {
        AddressLimit::with_salt(NonZeroU32::new(cap).expect("cap"), 1 << 16, 7).leak()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(AddressKey::from(a), AddressKey::from(b));
        assert_ne!(AddressKey::from(a), AddressKey::from(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(AddressKey::from(mapped), AddressKey::from(v4(192, 0, 2, 7)));
        assert_eq!(
            AddressKey::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            AddressKey::V6(0)
        );
    }

    #[test]
    fn an_address_holds_at_most_cap_and_gets_them_back_on_drop() {
        let l = limit(3);
        let a = v4(127, 0, 0, 2);
        let mut holds: Vec<Hold> = (0..3)
            .map(|_| l.try_hold(a).expect("under the cap"))
            .collect();
        assert!(l.try_hold(a).is_none());
        assert!(l.try_hold(a).is_none(), "a refusal takes nothing");
        assert_eq!(l.held(a), 3);
        drop(holds.pop());
        assert_eq!(l.held(a), 2);
        let again = l.try_hold(a);
        assert!(again.is_some());
        assert!(l.try_hold(a).is_none());
        drop((holds, again));
        assert_eq!(l.held(a), 0);
    }

    #[test]
    fn another_address_is_unaffected() {
        let l = limit(1);
        let (a, b) = (v4(127, 0, 0, 2), v4(127, 0, 0, 3));
        // The fixed salt puts these two apart (checked, not assumed).
        assert_ne!(l.index(AddressKey::from(a)), l.index(AddressKey::from(b)));
        let _held = l.try_hold(a).expect("free");
        assert!(l.try_hold(a).is_none());
        assert!(l.try_hold(b).is_some());
    }

    #[test]
    fn a_release_never_goes_below_zero() {
        let l = limit(1);
        let a = v4(10, 0, 0, 1);
        l.release(l.index(AddressKey::from(a)) as u32);
        assert_eq!(l.held(a), 0);
        let h = l.try_hold(a).expect("free");
        assert!(l.try_hold(a).is_none());
        drop(h);
        assert!(l.try_hold(a).is_some());
    }

    #[test]
    fn the_table_is_sized_for_the_connections_within_bounds() {
        assert_eq!(buckets_for(0), MIN_BUCKETS);
        assert_eq!(buckets_for(65_536), 1 << 20);
        assert_eq!(buckets_for(usize::MAX), MAX_BUCKETS);
        assert_eq!(buckets_for(1000), 16_384);
        let l = AddressLimit::new(NonZeroU32::MIN, 1000);
        assert_eq!(l.buckets(), 16_384);
    }

    #[test]
    fn threads_racing_for_one_address_never_exceed_the_cap() {
        const CAP: u32 = 4;
        let l = limit(CAP);
        let inside = AtomicU32::new(0);
        let most = AtomicU32::new(0);
        let a = v4(127, 0, 0, 9);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        if let Some(h) = l.try_hold(a) {
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            inside.fetch_sub(1, Ordering::SeqCst);
                            drop(h);
                        }
                    }
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= CAP);
        assert!(most.load(Ordering::SeqCst) >= 1);
        assert_eq!(l.held(a), 0, "every hold was given back");
    }

    #[test]
    fn with_the_server_full_of_distinct_addresses_few_new_ones_are_refused() {
        // 4,096 connections from distinct addresses in a table sized for
        // 8,192; then 4,096 more distinct addresses try once each.
        let l =
            AddressLimit::with_salt(NonZeroU32::new(2).expect("cap"), buckets_for(8192), 7).leak();
        let mut holds: Vec<Hold> = (0..4096u32)
            .filter_map(|i| l.try_hold(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))))
            .collect();
        assert!(holds.len() > 4096 - 20, "only {} of 4096 held", holds.len());
        let mut refused = 0;
        for i in 0..4096u32 {
            match l.try_hold(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))) {
                Some(h) => holds.push(h),
                None => refused += 1,
            }
        }
        // Expected about 4096 * P(two others share the counter) < 5.
        assert!(refused < 20, "{refused} of 4096 refused");
    }
}
