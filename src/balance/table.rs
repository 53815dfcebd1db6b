//! The endpoint table: the endpoints in service, read by callers to send without the
//! worker and by the worker's traffic-policy draw, and the queue of probes due.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use rand::Rng;

use super::fenwick::Fenwick;
use super::info::{EndpointInfo, EndpointState};
use super::policy::{Policy, TIERS, tier_shares};
use super::send::Reserved;
use super::stats::{EndpointStats, Mode};
use crate::InstanceKey;

/// The current endpoints, updated by the worker on discovery changes (and, under a
/// traffic policy, when endpoints enter or leave service), never on the request path;
/// endpoints update their own state atomically. Callers read it to send without the
/// worker ([`pick_direct`](Self::pick_direct)); the worker draws from it too when
/// weights or zones apply ([`draw`](Self::draw)).
#[derive(Clone)]
pub(crate) struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    table: RwLock<Table>,
    /// Each tier's share of the traffic, cumulative, as `f64` bits (see
    /// [`tier_shares`]); only read when zone-aware routing is on.
    shares: [AtomicU64; TIERS],
    policy: Policy,
    /// Endpoints whose ejection ran out, in the order their probes fell due: the
    /// worker gives each the next call it can send there, whatever the fleet size
    /// (a draw would land on one with a probability of 2/N).
    probes: Mutex<VecDeque<Arc<EndpointStats>>>,
    /// The queue's length, read by every caller without the lock.
    probes_due: AtomicUsize,
    /// Calls waiting for the worker (see [`Waiting`]): while any wait, callers queue
    /// behind them instead of taking freed capacity first.
    waiting: AtomicUsize,
}

/// One call handed to the worker, counted in the registry until the worker is done
/// with it (sent, failed, or given up by its caller), when this is dropped.
pub(crate) struct Waiting(Registry);

// === impl Waiting ===

impl Waiting {
    pub(crate) fn new(registry: &Registry) -> Self {
        registry.inner.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(registry.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.inner.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waiting")
    }
}

/// Draws per candidate before a draw gives up.
const DRAWS: usize = 4;

#[derive(Default)]
struct Table {
    map: HashMap<InstanceKey, Slot>,
    tiers: [Tier; TIERS],
}

#[derive(Clone, Copy)]
struct Slot {
    tier: usize,
    index: usize,
}

/// The endpoints of one tier (the client's zone, its region, the rest; all in the
/// first when zone-aware routing is off).
#[derive(Default)]
struct Tier {
    list: Vec<Entry>,
    /// The weights of the entries in service (`live`), by index, for draws by weight.
    live_weights: Fenwick,
    live: usize,
    /// How many entries have each weight: more than one key means draws by weight.
    weights: BTreeMap<u32, usize>,
}

struct Entry {
    stats: Arc<EndpointStats>,
    weight: u32,
    /// In service, as the endpoint last published it ([`Registry::set_in_service`]).
    live: bool,
}

/// What a draw makes of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Candidate {
    /// It may be compared.
    Take,
    /// Draw again.
    Skip,
    /// Draw again; it is in service and the call may go to it, but it cannot take a
    /// call this moment (its connection is busy). A tier that has one does not
    /// count as empty (see [`Miss::Busy`]).
    Busy,
}

/// Why a draw found no pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// The drawn tier takes all the traffic (its share is whole) and has an
    /// endpoint the judge called [`Candidate::Busy`]: the call should wait for it
    /// rather than leave the tier. A tier with a partial share never says this: the
    /// call would hold up the queue while the other tiers could serve it.
    Busy,
    /// Nothing in the drawn tier may take the call.
    Empty,
}

/// What the worker makes of a probe due (see [`Registry::next_probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Send the call there.
    Take,
    /// Leave it queued (busy now, or the endpoint the call avoids).
    Keep,
    /// Leave it out of the queue.
    Drop,
}

/// Two endpoints to compare, drawn from the table ([`Registry::draw`]) or from the
/// worker's ready set (the second absent when the tier has one in service), each with
/// the factor its calls waiting count by (see [`EndpointStats::prefer_second`]).
pub(crate) struct Pair {
    pub(crate) a: (Arc<EndpointStats>, f64),
    pub(crate) b: Option<(Arc<EndpointStats>, f64)>,
}

impl Pair {
    /// The one to call: the power-of-two-choices decision, the same for every pick
    /// (callers sending without the worker, and both of the worker's draws). In
    /// this order:
    ///
    /// 1. an endpoint whose ejection ran out ([`Mode::ProbeAllowed`]), unless it is
    ///    in `avoid`: the first drawn if both are;
    /// 2. the other one, when one is in `avoid` (the endpoints that refused or failed
    ///    the call before; the second when both are);
    /// 3. by cost ([`EndpointStats::prefer_second`], with the scales drawn): an
    ///    endpoint whose cost says nothing (never tried, or stale) takes the call,
    ///    the first drawn if both; otherwise the first drawn unless the second is
    ///    better by that function's rule (clearly cheaper at rest, cheaper under
    ///    load, twice as fast between differently weighted candidates whose loads
    ///    are alike).
    ///
    /// A lone candidate is taken whatever it is.
    pub(crate) fn choose(self, avoid: &[InstanceKey]) -> Arc<EndpointStats> {
        let Pair { a: (a, sa), b } = self;
        let Some((b, sb)) = b else {
            return a;
        };
        let avoided = |s: &EndpointStats| avoid.contains(&s.key);
        // An endpoint back from ejection is tried whatever its cost: one call decides
        // whether it returns, and its old estimate says nothing.
        let probe = |s: &EndpointStats| s.mode() == Mode::ProbeAllowed && !avoided(s);
        if probe(&a) {
            return a;
        }
        if probe(&b) {
            return b;
        }
        if avoided(&a) {
            return b;
        }
        if avoided(&b) {
            return a;
        }
        // Estimates that differ by noise leave the draw's proportions (uniform, or
        // by weight) in place.
        if EndpointStats::prefer_second(&a, sa, &b, sb) {
            b
        } else {
            a
        }
    }
}

// === impl Registry ===

impl Default for Registry {
    fn default() -> Self {
        Registry::new(Policy::default())
    }
}

impl Registry {
    pub(crate) fn new(policy: Policy) -> Self {
        let shares = [1.0f64, 1.0, 1.0].map(|s| AtomicU64::new(s.to_bits()));
        Registry {
            inner: Arc::new(Inner {
                table: RwLock::new(Table::default()),
                shares,
                policy,
                probes: Mutex::new(VecDeque::new()),
                probes_due: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.inner
            .table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an endpoint (replacing one under the same key) in O(log n).
    pub(crate) fn insert(
        &self,
        key: InstanceKey,
        shared: Arc<EndpointStats>,
        weight: u32,
        tier: usize,
    ) {
        let mut table = self.write();
        // The same endpoint again (its weight or tier changed) keeps its service state.
        let live = table.map.get(&key).is_some_and(|slot| {
            let entry = &table.tiers[slot.tier].list[slot.index];
            Arc::ptr_eq(&entry.stats, &shared) && entry.live
        });
        table.remove(&key);
        let t = &mut table.tiers[tier];
        let index = t.list.len();
        t.list.push(Entry {
            stats: shared,
            weight,
            live: false,
        });
        t.live_weights.push(0);
        *t.weights.entry(weight).or_default() += 1;
        t.set_live(index, live);
        table.map.insert(key, Slot { tier, index });
        self.update_shares(&table);
    }

    /// Whether the endpoint under `key` is in service (connected, not ejected,
    /// serving), as the endpoint publishes it: only endpoints in service are drawn.
    /// O(log n). `stats` guards against a key that now names another endpoint.
    pub(crate) fn set_in_service(&self, key: &InstanceKey, stats: &Arc<EndpointStats>, live: bool) {
        let mut table = self.write();
        let Some(&Slot { tier, index }) = table.map.get(key) else {
            return;
        };
        let t = &mut table.tiers[tier];
        if Arc::ptr_eq(&t.list[index].stats, stats) && t.list[index].live != live {
            t.set_live(index, live);
            self.update_shares(&table);
        }
    }

    /// The weight and tier the endpoint under `key` was inserted with.
    pub(crate) fn placement(&self, key: &InstanceKey) -> Option<(u32, usize)> {
        let table = self.read();
        let slot = table.map.get(key)?;
        Some((table.tiers[slot.tier].list[slot.index].weight, slot.tier))
    }

    /// Removes an endpoint in O(log n) (and from the probes due, in O(probes due)).
    pub(crate) fn remove(&self, key: &InstanceKey) {
        let mut table = self.write();
        table.remove(key);
        self.update_shares(&table);
        drop(table);
        if self.probes_due() {
            let mut probes = self.probes();
            probes.retain(|s| {
                let keep = s.key != *key;
                if !keep {
                    // It may come back (subsetting keeps a failing member's stats).
                    s.probe_queued.store(false, Ordering::Release);
                }
                keep
            });
            self.inner.probes_due.store(probes.len(), Ordering::Release);
        }
    }

    fn probes(&self) -> MutexGuard<'_, VecDeque<Arc<EndpointStats>>> {
        self.inner
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the probe of an endpoint whose ejection ran out (once: an endpoint
    /// already queued stays where it is).
    pub(crate) fn queue_probe(&self, stats: &Arc<EndpointStats>) {
        if stats.probe_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut probes = self.probes();
        probes.push_back(stats.clone());
        self.inner.probes_due.store(probes.len(), Ordering::Release);
    }

    /// Whether any probe is due: callers then leave their call to the worker, which
    /// sends the probes (one atomic load).
    pub(crate) fn probes_due(&self) -> bool {
        self.inner.probes_due.load(Ordering::Acquire) > 0
    }

    /// The first probe due that `take` accepts, in queue order. `take` says what to
    /// do with each: [`Probe::Take`] it (it leaves the queue), [`Probe::Keep`] it
    /// queued for a later call, or [`Probe::Drop`] it (no longer due, or out of
    /// service: its endpoint queues it again when it is back). O(probes due).
    pub(crate) fn next_probe(
        &self,
        mut take: impl FnMut(&Arc<EndpointStats>) -> Probe,
    ) -> Option<Arc<EndpointStats>> {
        let mut probes = self.probes();
        let mut found = None;
        let mut i = 0;
        while i < probes.len() {
            match take(&probes[i]) {
                Probe::Keep => i += 1,
                verdict => {
                    let stats = probes.remove(i)?;
                    stats.probe_queued.store(false, Ordering::Release);
                    if verdict == Probe::Take {
                        found = Some(stats);
                        break;
                    }
                }
            }
        }
        self.inner.probes_due.store(probes.len(), Ordering::Release);
        found
    }

    /// Whether draws follow a traffic policy: zone-aware routing, or weights that
    /// differ within a tier. Otherwise every draw is uniform over the endpoints.
    pub(crate) fn policy_active(&self) -> bool {
        self.inner.policy.zoned() || self.read().tiers.iter().any(Tier::weighted)
    }

    /// Recomputes the tiers' shares from their counts of endpoints and of endpoints
    /// in service, whenever either changes (under the write lock): O(1).
    fn update_shares(&self, table: &Table) {
        if !self.inner.policy.zoned() {
            return;
        }
        let (total, ready) = table.counts();
        let shares = tier_shares(self.inner.policy.routing(), total, ready);
        let mut sum = 0.0;
        for (slot, share) in self.inner.shares.iter().zip(shares) {
            sum += share;
            slot.store(sum.to_bits(), Ordering::Relaxed);
        }
    }

    /// The tiers' current shares of the traffic (not cumulative).
    pub(crate) fn shares(&self) -> [f64; TIERS] {
        let cumulative = self
            .inner
            .shares
            .each_ref()
            .map(|s| f64::from_bits(s.load(Ordering::Relaxed)));
        [
            cumulative[0],
            cumulative[1] - cumulative[0],
            cumulative[2] - cumulative[1],
        ]
    }

    /// Draws two endpoints to compare, by the traffic policy: a tier by the tiers'
    /// shares, then each candidate by weight (uniformly when weights are equal),
    /// judged by `judge`; a candidate it skips is drawn again, a few times at most.
    /// `None` when no pair is found, unless the tier has one endpoint in service,
    /// which is then returned alone. With `lone_ok` (the worker's draw), a tier
    /// whose draws all missed is searched for a candidate, and one found without a
    /// second (the others in its tier skipped: busy) is returned alone, so that the
    /// call stays in the tier the shares chose while it has an endpoint to take it;
    /// when the search finds none, [`Miss::Busy`] says whether one is only busy.
    pub(crate) fn draw<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        lone_ok: bool,
        judge: impl Fn(&EndpointStats) -> Candidate,
    ) -> Result<Pair, Miss> {
        let table = self.read();
        let cumulative = |i: usize| f64::from_bits(self.inner.shares[i].load(Ordering::Relaxed));
        let tier = if self.inner.policy.zoned() {
            let r: f64 = rng.random();
            (0..TIERS).find(|&i| r < cumulative(i)).unwrap_or(0)
        } else {
            0
        };
        // Whether the tier takes every call (the cumulative shares jump from 0 to 1
        // at it), up to rounding; read only when the worker's search misses.
        let whole = || {
            let before = if tier == 0 { 0.0 } else { cumulative(tier - 1) };
            cumulative(tier) - before >= 1.0 - 1e-9
        };
        let t = &table.tiers[tier];
        // Draws are by weight (all 1 when weights are equal or ignored) among the
        // endpoints in service, whose count is known: one in service is taken alone
        // (a failing one the capacity guard keeps is then the only choice anyway).
        let alone = t.live <= 1;
        let mean = if t.live > 0 {
            t.live_weights.total() as f64 / t.live as f64
        } else {
            1.0
        };
        let scale = |e: &Entry| mean / f64::from(e.weight);
        let pick = |rng: &mut R, other: Option<usize>| -> Option<usize> {
            // The second among the others: the first's weight range is cut out of
            // the draw.
            let total = t.live_weights.total();
            let (cut_at, cut) = match other {
                Some(a) if t.list[a].live => {
                    (t.live_weights.prefix(a), u64::from(t.list[a].weight))
                }
                _ => (0, 0),
            };
            if total <= cut {
                return None;
            }
            let mut target = rng.random_range(0..total - cut);
            if target >= cut_at {
                target += cut;
            }
            Some(t.live_weights.find(target))
        };
        let draw = |rng: &mut R, other: Option<usize>| -> Option<usize> {
            (0..DRAWS)
                .filter_map(|_| pick(rng, other))
                .find(|&i| judge(&t.list[i].stats) == Candidate::Take)
        };
        let a = match draw(rng, None) {
            Some(a) => a,
            // Most of the tier is busy: the first it has that the judge takes, so
            // that the call stays in its tier (O(n), only when the draws missed).
            None if lone_ok => {
                let mut busy = false;
                let found = (0..t.list.len()).find(|&i| {
                    if !t.list[i].live {
                        return false;
                    }
                    match judge(&t.list[i].stats) {
                        Candidate::Take => true,
                        Candidate::Busy => {
                            busy = true;
                            false
                        }
                        Candidate::Skip => false,
                    }
                });
                match found {
                    Some(a) => a,
                    None if busy && whole() => return Err(Miss::Busy),
                    None => return Err(Miss::Empty),
                }
            }
            None => return Err(Miss::Empty),
        };
        let ea = &t.list[a];
        let b = if alone {
            None
        } else if lone_ok {
            draw(rng, Some(a))
        } else {
            Some(draw(rng, Some(a)).ok_or(Miss::Empty)?)
        };
        Ok(Pair {
            a: (ea.stats.clone(), scale(ea)),
            b: b.map(|b| (t.list[b].stats.clone(), scale(&t.list[b]))),
        })
    }

    /// Power of two choices over the endpoints a caller may send on now (see
    /// [`EndpointStats::direct`]), by the same draw and decision the worker uses
    /// ([`draw`](Self::draw), [`Pair::choose`]). Two are drawn among those ready, as
    /// the worker draws from its ready set: an endpoint that is not (ejected, due a
    /// probe, connecting, at its stream limit) is drawn again, a few times at most,
    /// never taken by default, since an instance the guard keeps in service despite
    /// its failures must still lose its comparison. No candidate is due a probe and
    /// none is avoided, so the decision is the cost comparison, where an endpoint
    /// never tried, or whose estimate expired, takes the call.
    /// `None` leaves the call to the worker: fewer than two ready endpoints found
    /// (one, when it is the only endpoint in service), a probe is due anywhere (the
    /// worker sends the probes, see [`next_probe`](Self::next_probe)), or calls wait
    /// for the worker: they are served first, in order, so a caller in a closed loop
    /// cannot take a stream freed under them.
    ///
    /// The pick comes with a stream slot reserved on its connection (see
    /// [`EndpointStats::try_reserve_stream`]); when the slot went to another caller
    /// in the meantime, the call goes to the worker.
    pub(crate) fn pick_direct(&self) -> Option<Reserved> {
        if self.probes_due() || self.inner.waiting.load(Ordering::Acquire) > 0 {
            return None;
        }
        let pair = self
            .draw(&mut rand::rng(), false, |s| {
                if s.direct_ready() {
                    Candidate::Take
                } else {
                    Candidate::Skip
                }
            })
            .ok()?;
        Reserved::new(pair.choose(&[]))
    }

    /// Each tier's endpoints and endpoints in service.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> ([usize; TIERS], [usize; TIERS]) {
        self.read().counts()
    }

    /// Whether the table has the endpoint under `key` in service.
    #[cfg(test)]
    pub(crate) fn in_service(&self, key: &InstanceKey) -> Option<bool> {
        let table = self.read();
        let slot = table.map.get(key)?;
        Some(table.tiers[slot.tier].list[slot.index].live)
    }

    /// The stats of the endpoint under `key`.
    pub(crate) fn stats(&self, key: &InstanceKey) -> Option<Arc<EndpointStats>> {
        let table = self.read();
        let slot = table.map.get(key)?;
        Some(table.tiers[slot.tier].list[slot.index].stats.clone())
    }

    /// Whether an endpoint is under `key`.
    pub(crate) fn contains(&self, key: &InstanceKey) -> bool {
        self.read().map.contains_key(key)
    }

    /// Whether `stats` is the endpoint under its key (not one it replaced).
    pub(crate) fn is_current(&self, stats: &Arc<EndpointStats>) -> bool {
        let table = self.read();
        table
            .map
            .get(&stats.key)
            .is_some_and(|slot| Arc::ptr_eq(&table.tiers[slot.tier].list[slot.index].stats, stats))
    }

    /// How many endpoints the table holds, in service or not.
    pub(crate) fn len(&self) -> usize {
        self.read().map.len()
    }

    /// Every endpoint's key.
    pub(crate) fn keys(&self) -> Vec<InstanceKey> {
        self.read().map.keys().cloned().collect()
    }

    /// Calls `f` with every endpoint's stats, under the read lock (`f` must not
    /// call back into the registry). O(n).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<EndpointStats>)) {
        let table = self.read();
        for tier in &table.tiers {
            for entry in &tier.list {
                f(&entry.stats);
            }
        }
    }

    /// The endpoints as [`BalancedChannel::endpoints`](super::BalancedChannel::endpoints)
    /// shows them: `Ready` only once draws can pick the endpoint.
    pub(crate) fn snapshot(&self) -> Vec<EndpointInfo> {
        let table = self.read();
        let mut infos: Vec<EndpointInfo> = table
            .map
            .iter()
            .map(|(key, slot)| {
                let entry = &table.tiers[slot.tier].list[slot.index];
                let stats = &entry.stats;
                // Ready is what draws see: a connection that came up counts once its
                // endpoint published it, as the tier shares and the picker do.
                let state = match stats.state() {
                    EndpointState::Ready if !entry.live => EndpointState::Connecting,
                    state => state,
                };
                EndpointInfo {
                    key: key.clone(),
                    address: stats.address.clone(),
                    state,
                    ejected_until: stats.ejected_until(),
                    open_streams: stats.open_streams(),
                    weight: entry.weight,
                    tier: slot.tier,
                }
            })
            .collect();
        infos.sort_by(|a, b| a.key.cmp(&b.key));
        infos
    }
}

// === impl Table ===

impl Table {
    /// Each tier's endpoints and endpoints in service.
    fn counts(&self) -> ([usize; TIERS], [usize; TIERS]) {
        (
            self.tiers.each_ref().map(|t| t.list.len()),
            self.tiers.each_ref().map(|t| t.live),
        )
    }

    fn remove(&mut self, key: &InstanceKey) {
        let Some(Slot { tier, index }) = self.map.remove(key) else {
            return;
        };
        let t = &mut self.tiers[tier];
        if let Some(moved) = t.swap_remove(index)
            && let Some(slot) = self.map.get_mut(&moved)
        {
            slot.index = index;
        }
    }
}

// === impl Tier ===

impl Tier {
    fn weighted(&self) -> bool {
        self.weights.len() > 1
    }

    fn set_live(&mut self, index: usize, live: bool) {
        let entry = &mut self.list[index];
        if entry.live == live {
            return;
        }
        entry.live = live;
        let w = i64::from(entry.weight);
        if live {
            self.live_weights.add(index, w);
            self.live += 1;
        } else {
            self.live_weights.add(index, -w);
            self.live -= 1;
        }
    }

    /// Removes the entry at `index`, moving the last one there; returns the moved
    /// entry's key.
    fn swap_remove(&mut self, index: usize) -> Option<InstanceKey> {
        self.set_live(index, false);
        let last = self.list.len() - 1;
        let moved_live = self.list[last].live;
        if index != last && moved_live {
            self.set_live(last, false);
        }
        self.live_weights.pop_zero();
        let removed = self.list.swap_remove(index);
        if let Some(n) = self.weights.get_mut(&removed.weight) {
            *n -= 1;
            if *n == 0 {
                self.weights.remove(&removed.weight);
            }
        }
        if index == last {
            return None;
        }
        if moved_live {
            self.set_live(index, true);
        }
        Some(self.list[index].stats.key.clone())
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use std::time::Duration;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::balance::FailureAccrual;
    use crate::balance::policy::ZoneRouting;
    use crate::{Instance, Locality};

    pub(super) fn stats(id: &str) -> Arc<EndpointStats> {
        let (trips, _) = tokio::sync::mpsc::unbounded_channel();
        let s = EndpointStats::new(
            InstanceKey::new("n", id),
            format!("{id}:1"),
            Duration::from_millis(1),
            Duration::from_secs(10),
            Arc::new(FailureAccrual::default()),
            trips,
            crate::balance::metrics::Telemetry::detached(),
        );
        s.set_conn(EndpointState::Ready);
        s
    }

    /// Inserts an endpoint in service, as its first poll would publish it.
    fn add(registry: &Registry, id: &str, weight: u32, tier: usize) {
        let s = stats(id);
        registry.insert(s.key.clone(), s.clone(), weight, tier);
        registry.set_in_service(&s.key, &s, true);
    }

    #[test]
    fn a_connection_is_shown_ready_once_draws_can_pick_it() {
        let registry = Registry::new(Policy::default());
        let s = stats("a");
        registry.insert(s.key.clone(), s.clone(), 1, 0);
        let shown = |r: &Registry| r.snapshot()[0].state();
        assert_eq!(s.state(), EndpointState::Ready, "the connection is up");
        assert_eq!(shown(&registry), EndpointState::Connecting, "not drawn yet");
        registry.set_in_service(&s.key, &s, true);
        assert_eq!(shown(&registry), EndpointState::Ready);
        s.set_conn(EndpointState::Backoff);
        assert_eq!(
            shown(&registry),
            EndpointState::Backoff,
            "the connection leads going out"
        );
    }

    #[test]
    fn the_workers_draw_stays_in_its_tier_while_the_tier_has_a_candidate() {
        let policy = Policy::new(
            Some(Locality::new("r", "a")),
            "zone".into(),
            "region".into(),
            ZoneRouting::new(),
            true,
        );
        let registry = Registry::new(policy);
        for (id, tier) in [("a1", 0), ("a2", 0), ("b1", 1), ("b2", 1)] {
            add(&registry, id, 1, tier);
        }
        assert_eq!(registry.shares(), [1.0, 0.0, 0.0]);
        // a1 is busy: only a2 of zone a may take the call.
        let judge = |s: &EndpointStats| {
            if s.key.id() == "a1" {
                Candidate::Skip
            } else {
                Candidate::Take
            }
        };
        let mut rng = StdRng::seed_from_u64(3);
        let mut missed = 0;
        for _ in 0..1_000 {
            let pair = registry.draw(&mut rng, true, judge).expect("a2 is there");
            assert_eq!(pair.a.0.key.id(), "a2");
            assert!(pair.b.is_none(), "no second in the tier");
            missed += usize::from(registry.draw(&mut rng, false, judge).is_err());
        }
        assert_eq!(
            missed, 1_000,
            "the callers' draw needs a pair, and leaves it to the worker"
        );
    }

    fn take(_: &EndpointStats) -> Candidate {
        Candidate::Take
    }

    /// How often each id is drawn first, and that the second is always another.
    fn first_shares(registry: &Registry, draws: usize) -> BTreeMap<String, f64> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = BTreeMap::<String, usize>::new();
        for _ in 0..draws {
            let pair = registry.draw(&mut rng, false, take).expect("a pair");
            if let Some((b, _)) = &pair.b {
                assert_ne!(
                    b.key, pair.a.0.key,
                    "the second candidate is another endpoint"
                );
            }
            *counts.entry(pair.a.0.key.id().to_owned()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(k, n)| (k, n as f64 / draws as f64))
            .collect()
    }

    #[tokio::test]
    async fn weights_set_how_often_an_endpoint_is_drawn() {
        let registry = Registry::default();
        for (id, w) in [("w1", 1), ("w2", 2), ("w4", 4)] {
            add(&registry, id, w, 0);
        }
        assert!(registry.policy_active());
        let shares = first_shares(&registry, 70_000);
        for (id, want) in [("w1", 1.0 / 7.0), ("w2", 2.0 / 7.0), ("w4", 4.0 / 7.0)] {
            assert!((shares[id] - want).abs() < 0.01, "{id}: {shares:?}");
        }
        // Out of service, an endpoint is no longer drawn.
        let w4 = registry.read().tiers[0].list[2].stats.clone();
        registry.set_in_service(&w4.key, &w4, false);
        let shares = first_shares(&registry, 30_000);
        assert!(!shares.contains_key("w4"), "{shares:?}");
        assert!((shares["w1"] - 1.0 / 3.0).abs() < 0.01, "{shares:?}");
        // Removal keeps the draw consistent (the last entry moves into the hole).
        registry.remove(&InstanceKey::new("n", "w1"));
        let shares = first_shares(&registry, 1_000);
        assert_eq!(shares.keys().collect::<Vec<_>>(), ["w2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn close_costs_keep_the_first_drawn_and_stale_estimates_get_a_call() {
        let (a, b) = (stats("a"), stats("b"));
        let tried = |s: &EndpointStats| {
            s.call_started();
            s.headers_received(Instant::now(), true);
        };
        // Never tried, an endpoint takes the call whatever its cost.
        tried(&a);
        a.rtt.reset(Duration::from_micros(100));
        b.rtt.reset(Duration::from_micros(900));
        assert!(EndpointStats::prefer_second(&a, 1.0, &b, 1.0));
        tried(&b);
        a.rtt.reset(Duration::from_micros(100));
        b.rtt.reset(Duration::from_micros(120));
        assert!(!EndpointStats::prefer_second(&a, 1.0, &b, 1.0));
        assert!(
            !EndpointStats::prefer_second(&b, 1.0, &a, 1.0),
            "within 1.5x: the first drawn keeps the call"
        );
        b.rtt.reset(Duration::from_micros(300));
        assert!(
            EndpointStats::prefer_second(&b, 1.0, &a, 1.0),
            "clearly cheaper wins"
        );
        // `b` keeps losing; once its estimate expired it takes the call when drawn,
        // and its answer sets a new estimate.
        tokio::time::advance(Duration::from_millis(900)).await;
        a.rtt.reset(Duration::from_micros(100));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(b.stale(Instant::now()) && !a.stale(Instant::now()));
        assert!(EndpointStats::prefer_second(&a, 1.0, &b, 1.0));
        b.rtt.observe(Duration::from_micros(100));
        assert!(!b.stale(Instant::now()));
        assert!(!EndpointStats::prefer_second(&a, 1.0, &b, 1.0));
    }

    /// What we want to test: between instances of different weights, a call or so
    /// waiting (alike loads per unit of weight) leaves the draw's choice alone, so
    /// the shares follow the weights under load; a clear difference in load or in
    /// latency decides.
    #[tokio::test(start_paused = true)]
    async fn weighted_candidates_with_alike_loads_keep_the_first_drawn() {
        let (light, heavy) = (stats("w1"), stats("w4"));
        for s in [&light, &heavy] {
            s.call_started();
            s.headers_received(Instant::now(), true);
            s.rtt.reset(Duration::from_micros(200));
        }
        // Weights 1 and 4: the mean weight 2.5 over each one's own.
        let (sl, sh) = (2.5, 0.625);
        // At rest the estimates decide, at 1.5x: one late answer on the heavier (its
        // estimate 10 ms, its typical latency still near 200 µs) gives the call to
        // the lighter.
        heavy.rtt.observe(Duration::from_millis(10));
        assert!(EndpointStats::prefer_second(&heavy, sh, &light, sl));
        heavy.rtt.reset(Duration::from_micros(200));
        assert!(!EndpointStats::prefer_second(&heavy, sh, &light, sl));
        // One call waits on the heavier: 0.625 against 0, within one call of the
        // lighter (2.5). Before, the idle lighter one took the call (1.625 × 200 µs
        // against 200 µs, compared strictly under load).
        heavy.call_started();
        assert!(!EndpointStats::prefer_second(&heavy, sh, &light, sl));
        assert!(!EndpointStats::prefer_second(&light, sl, &heavy, sh));
        // One late answer on the heavier (its estimate 10 ms) leaves its typical
        // latency near 200 µs: it keeps the calls it is drawn for.
        heavy.rtt.observe(Duration::from_millis(10));
        assert!(!EndpointStats::prefer_second(&heavy, sh, &light, sl));
        heavy.rtt.reset(Duration::from_micros(200));
        // Twice as fast decides while loads are alike; 1.7 times does not.
        light.rtt.reset(Duration::from_micros(120));
        assert!(!EndpointStats::prefer_second(&heavy, sh, &light, sl));
        light.rtt.reset(Duration::from_micros(90));
        assert!(EndpointStats::prefer_second(&heavy, sh, &light, sl));
        light.rtt.reset(Duration::from_micros(200));
        // Five calls on the heavier (3.1 per 2.5) are more than a call of the lighter
        // apart: the cheaper takes it.
        for _ in 0..4 {
            heavy.call_started();
        }
        assert!(EndpointStats::prefer_second(&heavy, sh, &light, sl));
        assert!(!EndpointStats::prefer_second(&light, sl, &heavy, sh));
        // Equal weights stay strict under load: the same two, equally loaded and
        // weighted, go to the faster even by less than 1.5x.
        light.call_started();
        for _ in 0..4 {
            heavy.headers_received(Instant::now(), true);
        }
        light.rtt.reset(Duration::from_micros(150));
        heavy.rtt.reset(Duration::from_micros(200));
        assert!(EndpointStats::prefer_second(&heavy, 1.0, &light, 1.0));
        assert!(!EndpointStats::prefer_second(&light, 1.0, &heavy, 1.0));
    }

    /// What we want to test: the one decision every pick makes between two
    /// candidates, in its order of precedence.
    #[tokio::test(start_paused = true)]
    async fn choose_takes_a_probe_then_avoids_then_compares_costs() {
        let tried = |id: &str, rtt_us: u64| {
            let s = stats(id);
            s.call_started();
            s.headers_received(Instant::now(), true);
            s.rtt.reset(Duration::from_micros(rtt_us));
            s
        };
        let (cheap, dear, close) = (tried("cheap", 100), tried("dear", 900), tried("close", 120));
        let probe = tried("probe", 900);
        probe.eject();
        probe.allow_probe();
        assert_eq!(probe.mode(), Mode::ProbeAllowed);
        let fresh = stats("fresh");
        fresh.rtt.reset(Duration::from_micros(900));
        assert!(fresh.untried());
        let choose =
            |a: &Arc<EndpointStats>, b: &Arc<EndpointStats>, avoid: Option<&Arc<EndpointStats>>| {
                let pair = Pair {
                    a: (a.clone(), 1.0),
                    b: Some((b.clone(), 1.0)),
                };
                let avoid: Vec<InstanceKey> = avoid.map(|s| s.key.clone()).into_iter().collect();
                pair.choose(&avoid).key.id().to_owned()
            };

        // 1. An endpoint whose ejection ran out beats a cheaper one, drawn first or
        // second, unless it is the endpoint to avoid.
        assert_eq!(choose(&cheap, &probe, None), "probe");
        assert_eq!(choose(&probe, &cheap, None), "probe");
        assert_eq!(choose(&probe, &fresh, None), "probe");
        assert_eq!(choose(&probe, &dear, Some(&probe)), "dear");
        // 2. The endpoint to avoid loses, even when cheaper or never tried.
        assert_eq!(choose(&cheap, &dear, Some(&cheap)), "dear");
        assert_eq!(choose(&dear, &cheap, Some(&cheap)), "dear");
        assert_eq!(choose(&fresh, &dear, Some(&fresh)), "dear");
        // 3. An endpoint never tried takes the call, whatever its cost.
        assert_eq!(choose(&cheap, &fresh, None), "fresh");
        assert_eq!(choose(&fresh, &cheap, Some(&dear)), "fresh");
        // Otherwise the clearly cheaper wins, and a near tie keeps the first drawn.
        assert_eq!(choose(&dear, &cheap, None), "cheap");
        assert_eq!(choose(&cheap, &dear, None), "cheap");
        assert_eq!(choose(&cheap, &close, None), "cheap");
        assert_eq!(choose(&close, &cheap, None), "close");
        // A lone candidate is taken, even the one to avoid.
        let alone = Pair {
            a: (dear.clone(), 1.0),
            b: None,
        };
        assert_eq!(
            alone.choose(std::slice::from_ref(&dear.key)).key.id(),
            "dear"
        );
        // An expired estimate says as little as none: of a stale and an untried
        // endpoint, the first drawn takes the call.
        tokio::time::advance(Duration::from_millis(1_100)).await;
        assert!(cheap.stale(Instant::now()));
        assert_eq!(choose(&cheap, &fresh, None), "cheap");
        assert_eq!(choose(&fresh, &cheap, None), "fresh");
    }

    #[tokio::test]
    async fn equal_weights_draw_uniformly_without_a_policy() {
        let registry = Registry::default();
        for id in ["a", "b", "c"] {
            add(&registry, id, 5, 0);
        }
        assert!(!registry.policy_active());
        let shares = first_shares(&registry, 30_000);
        for id in ["a", "b", "c"] {
            assert!((shares[id] - 1.0 / 3.0).abs() < 0.01, "{shares:?}");
        }
    }

    #[tokio::test]
    async fn zones_spill_over_in_proportion_to_missing_capacity() {
        let policy = Policy::new(
            Some(Locality::new("r", "a")),
            "zone".into(),
            "region".into(),
            ZoneRouting::new(),
            true,
        );
        let registry = Registry::new(policy.clone());
        for (id, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")] {
            let instance = Instance::new(InstanceKey::new("n", id), "127.0.0.1", 1)
                .with_locality(Locality::new("r", zone));
            add(&registry, id, 1, policy.tier(&instance));
        }
        let zone_a = |shares: &BTreeMap<String, f64>| {
            shares
                .iter()
                .filter(|(k, _)| k.starts_with('a'))
                .map(|(_, v)| v)
                .sum::<f64>()
        };
        assert_eq!(zone_a(&first_shares(&registry, 10_000)), 1.0);
        let a1 = registry.read().tiers[0].list[0].stats.clone();
        registry.set_in_service(&a1.key, &a1, false);
        let shares = first_shares(&registry, 40_000);
        assert!((zone_a(&shares) - 0.7).abs() < 0.01, "{shares:?}");
        assert!(!shares.contains_key(a1.key.id()));
        registry.set_in_service(&a1.key, &a1, true);
        assert_eq!(
            zone_a(&first_shares(&registry, 10_000)),
            1.0,
            "traffic returns"
        );
    }
}

#[cfg(test)]
#[path = "table_props.rs"]
mod props;
