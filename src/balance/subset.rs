//! Deterministic subsetting: each client connects to `k` of a service's `n`
//! instances, so that many clients spread their connections evenly and a membership
//! change moves few of them.
//!
//! # The choice: deterministic aperture
//!
//! Two families were weighed, rendezvous hashing and Finagle's deterministic
//! aperture.
//!
//! - **Rendezvous hashing** (each client takes the `k` instances with the highest
//!   `hash(client, instance)`) needs no coordination and moves nothing but the
//!   removed instance's connections. But each client draws independently, so the
//!   connections per instance follow a binomial law: with 100 clients × 16 of 1,000
//!   instances (1.6 per instance on average) the busiest instance carries 5 or 6, over
//!   3× the mean. A "balance correction" would need each client to know what the
//!   others chose, which is the coordination it was meant to avoid.
//! - **Deterministic aperture** puts the instances on a ring (here in the order of a
//!   stable hash of their key, so neighbours on the ring are unrelated hosts) and the
//!   clients on a second ring at even spacing: client `i` of `N` starts at ring
//!   position `i·n/N` (rounded) and takes the `k` instances from there. Every window of `k`
//!   ring positions then holds `⌊kN/n⌋` or `⌈kN/n⌉` client starts, so every instance
//!   carries one of those two counts: the best any integer assignment can do (1 or 2
//!   for the example above, max/mean 1.25). The price is that each client must know
//!   its index and the number of clients ([`Coordinate::new`]), e.g. a StatefulSet
//!   ordinal and replica count.
//!
//! This module implements the deterministic aperture, because the even spread is
//! what subsetting is for. Without a known index, [`Coordinate::from_seed`] places a
//! client at a hashed point of the ring instead (Finagle's random aperture): no
//! coordination, and a spread no better than rendezvous hashing.
//!
//! # Churn
//!
//! Removing one of `n` instances moves every client start from `i·n/N` to
//! `i·(n-1)/N` (rounded to a ring position); in terms of the instances themselves a
//! client's window moves by at most one place, so each client changes at most two
//! connections (one when its window held the removed instance and did not move). A
//! client moves at all only when the rescaled start crosses an instance boundary,
//! which happens to about a third of the clients on average (a quarter when `n` is a
//! multiple of `N`, which the rounding makes the best case), and up to half of them
//! when the removed instance sits at the start of the ring. That is the price of the
//! even spread: every start depends on `n`. Rendezvous hashing moves only the removed
//! instance's connections. [`Subset::groups`] splits the ring into ranges that
//! rescale on their own, so a change moves only the windows of one range's clients,
//! at the cost of an exact spread guarantee. The benchmark harness's subsetting scenario simulates
//! 100 clients × 1,000 instances with `k = 16`.
//!
//! Members that are ejected, not ready or failing are *excluded* rather than
//! removed: they keep their place on the ring, so excluding one does not shift
//! anybody, and the window simply reaches one instance further ("refill"). When the
//! member comes back, the extra instance leaves the subset again.

use std::fmt;

use crate::error::{Error, Result};
use crate::instance::InstanceKey;

/// Where a client sits on the ring of clients.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Coordinate(Position);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Client `index` of `count`, evenly spaced.
    Index { index: u32, count: u32 },
    /// A point of the ring, as a fraction of 2^64.
    Point(u64),
}

// === impl Coordinate ===

impl Coordinate {
    /// Client `index` of `count` clients of the service (e.g. a StatefulSet ordinal
    /// and the replica count): the even spread. Every client of the service must use
    /// the same `count` and a distinct `index`.
    ///
    /// # Errors
    ///
    /// A configuration error when `count` is 0 or `index >= count`.
    pub fn new(index: u32, count: u32) -> Result<Self> {
        if index >= count {
            return Err(Error::config(format!(
                "subset coordinate: index {index} is not below the client count {count}"
            )));
        }
        Ok(Coordinate(Position::Index { index, count }))
    }

    /// A point of the ring derived from `seed` (e.g. a hash of the host name): no
    /// coordination between clients, and a spread no better than random.
    pub fn from_seed(seed: u64) -> Self {
        Coordinate(Position::Point(mix(seed)))
    }
}

impl fmt::Debug for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Position::Index { index, count } => write!(f, "Coordinate({index}/{count})"),
            Position::Point(p) => write!(f, "Coordinate(point {p:#018x})"),
        }
    }
}

/// The ring of a service's members and one client's window on it: which `k` members
/// this client connects to.
///
/// Feed it the discovery's membership ([`insert`](Self::insert) and
/// [`remove`](Self::remove), O(n) each), and ask for the subset with
/// [`select`](Self::select), passing the members to skip (ejected, failing, not
/// ready): O(k + skipped).
///
/// ```
/// use tonic_discovery::InstanceKey;
/// use tonic_discovery::balance::{Coordinate, Subset};
///
/// let mut subset = Subset::new(Coordinate::new(3, 10)?, 4);
/// for i in 0..40 {
///     subset.insert(InstanceKey::new("", format!("echo-{i}")));
/// }
/// let picked: Vec<InstanceKey> = subset.select(|_| false).cloned().collect();
/// assert_eq!(picked.len(), 4);
/// // An ejected member is replaced by the next one on the ring; the others stay.
/// let ejected = picked[1].clone();
/// let refilled: Vec<InstanceKey> = subset.select(|k| *k == ejected).cloned().collect();
/// assert_eq!(refilled.len(), 4);
/// assert!(!refilled.contains(&ejected));
/// assert!(picked.iter().filter(|k| **k != ejected).all(|k| refilled.contains(k)));
/// # Ok::<(), tonic_discovery::Error>(())
/// ```
///
/// # Use in a balancer
///
/// Keep every discovered instance in the ring (`insert` on `Change::Insert` of a new
/// key, `remove` on `Change::Remove`), whether connected or not. After each change
/// of membership or of an endpoint's state, compute two sets: the *home* subset,
/// `select(|_| false)`, and the *active* one, `select(|k| failing(k))`, where
/// `failing` is true for endpoints ejected, not serving or in reconnect backoff
/// after a failed connect. Hold endpoints for the union: home members that fail
/// keep reconnecting or probing and win their place back when they recover, while
/// the refills (active but not home) carry their traffic meanwhile. An endpoint
/// still making its first connection is not failing: excluding it would connect a
/// refill for every newcomer.
#[derive(Clone)]
pub struct Subset {
    coordinate: Coordinate,
    size: usize,
    groups: u32,
    /// The members in ring order: sorted by (stable hash, key).
    ring: Vec<(u64, InstanceKey)>,
}

// === impl Subset ===

impl Subset {
    /// An empty ring; the client at `coordinate` wants `size` members (`k`).
    pub fn new(coordinate: Coordinate, size: usize) -> Self {
        Subset {
            coordinate,
            size,
            groups: 1,
            ring: Vec::new(),
        }
    }

    /// Splits the ring into `groups` hash ranges, each with its own share of the
    /// clients (client `i` serves range `i % groups`), so that a membership change
    /// moves only the windows of the clients of one range. Default: 1. Taken into
    /// account with [`Coordinate::new`] only, and at most the client count.
    ///
    /// The ranges hold about `n / groups` members each, not exactly: every member
    /// still carries `⌊kN/n⌋` or `⌈kN/n⌉` clients as long as each range's own ratio
    /// stays between the same two integers, which holds when `n / groups` is large
    /// (with 100 clients, 1,000 members and `k = 16`, 4 ranges of about 250 members
    /// carry 1.6 ± 0.1 clients per member, so 1 or 2 each). Use it when the
    /// fleet is large and churn matters more than an exact spread.
    #[must_use]
    pub fn groups(mut self, groups: u32) -> Self {
        self.groups = groups.max(1);
        self
    }

    /// Adds a member; false when it was already there. O(n).
    pub fn insert(&mut self, key: InstanceKey) -> bool {
        let entry = (ring_hash(&key), key);
        match self.ring.binary_search(&entry) {
            Ok(_) => false,
            Err(at) => {
                self.ring.insert(at, entry);
                true
            }
        }
    }

    /// Removes a member; false when it was not there. O(n).
    pub fn remove(&mut self, key: &InstanceKey) -> bool {
        let probe = (ring_hash(key), key.clone());
        match self.ring.binary_search(&probe) {
            Ok(at) => {
                self.ring.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Replaces the membership. O(n log n).
    pub fn set_members<'a>(&mut self, keys: impl IntoIterator<Item = &'a InstanceKey>) {
        self.ring.clear();
        self.ring
            .extend(keys.into_iter().map(|k| (ring_hash(k), k.clone())));
        self.ring.sort_unstable();
        self.ring.dedup();
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// How many members the client connects to: `size`, raised to `⌈m / c⌉` when
    /// the client count is known (`m` members and `c` clients in its range), so that
    /// every member has a client (as Finagle's aperture does), and at most `n`.
    pub fn aperture(&self) -> usize {
        self.window().aperture
    }

    /// The subset: walking the ring from this client's start, the first
    /// [`aperture`](Self::aperture) members for which `excluded` is false. An
    /// excluded member is replaced by the next one on the ring (refill), so the
    /// others stay put. Fewer come out only when too few members are left.
    pub fn select<F>(&self, excluded: F) -> Select<'_, F>
    where
        F: FnMut(&InstanceKey) -> bool,
    {
        let w = self.window();
        Select {
            ring: &self.ring,
            lo: w.lo,
            len: w.len,
            start: w.start,
            walked: 0,
            wanted: w.aperture,
            excluded,
        }
    }

    /// This client's range of the ring, its start in it and its aperture.
    fn window(&self) -> Window {
        let n = self.ring.len();
        let (lo, len, start, cover) = match self.coordinate.0 {
            Position::Index { index, count } => {
                let groups = self.groups.min(count);
                let group = index % groups;
                let clients = (count - group).div_ceil(groups);
                let lo = self
                    .ring
                    .partition_point(|(h, _)| range_of(*h, groups) < group);
                let hi = self
                    .ring
                    .partition_point(|(h, _)| range_of(*h, groups) <= group);
                let (len, local) = ((hi - lo) as u128, u128::from(index / groups));
                // Rounded rather than floored: see "Churn" in the module docs.
                let start = (2 * local * len + u128::from(clients)) / (2 * u128::from(clients));
                let cover = (hi - lo).div_ceil(clients as usize);
                (lo, hi - lo, start as usize, cover)
            }
            Position::Point(p) => (0, n, ((u128::from(p) * n as u128) >> 64) as usize, 0),
        };
        Window {
            lo,
            len,
            start,
            aperture: self.size.max(cover).min(n),
        }
    }
}

/// Where a client's window lies: `len` ring positions from `lo`, starting at
/// `lo + start` (`start < len` unless the range is empty).
struct Window {
    lo: usize,
    len: usize,
    start: usize,
    aperture: usize,
}

/// The hash range (of `groups`) a ring position belongs to; ranges are contiguous
/// on the ring, which is sorted by hash.
fn range_of(hash: u64, groups: u32) -> u32 {
    // Below `groups`: hash < 2^64.
    ((u128::from(hash) * u128::from(groups)) >> 64) as u32
}

impl fmt::Debug for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subset")
            .field("coordinate", &self.coordinate)
            .field("size", &self.size)
            .field("groups", &self.groups)
            .field("members", &self.ring.len())
            .finish()
    }
}

/// The members of a subset, from [`Subset::select`].
pub struct Select<'a, F> {
    ring: &'a [(u64, InstanceKey)],
    lo: usize,
    len: usize,
    start: usize,
    walked: usize,
    wanted: usize,
    excluded: F,
}

impl<'a, F: FnMut(&InstanceKey) -> bool> Iterator for Select<'a, F> {
    type Item = &'a InstanceKey;

    fn next(&mut self) -> Option<&'a InstanceKey> {
        let n = self.ring.len();
        while self.wanted > 0 && self.walked < n {
            // The client's range from its start, then the rest of the ring.
            let t = self.walked;
            let at = if t < self.len {
                self.lo + (self.start + t) % self.len
            } else {
                (self.lo + t) % n
            };
            let (_, key) = &self.ring[at];
            self.walked += 1;
            if !(self.excluded)(key) {
                self.wanted -= 1;
                return Some(key);
            }
        }
        None
    }
}

impl<F> fmt::Debug for Select<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("start", &self.start)
            .field("walked", &self.walked)
            .field("wanted", &self.wanted)
            .finish()
    }
}

/// A member's place on the ring: FNV-1a over node and id, then a finalizer.
///
/// Every client must compute the same order, whatever its process, platform or
/// version of this crate: changing this function reshuffles every subset of a fleet
/// in the middle of a rolling upgrade, so it is fixed here rather than taken from
/// `std`'s hasher (randomly keyed, and unspecified across releases).
fn ring_hash(key: &InstanceKey) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = key.node().bytes().chain([0xff]).chain(key.id().bytes());
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    mix(h)
}

/// SplitMix64's finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[path = "subset_tests.rs"]
mod tests;
