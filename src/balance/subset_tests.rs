use std::collections::{BTreeSet, HashMap, HashSet};

use proptest::prelude::*;

use super::*;

fn key(i: usize) -> InstanceKey {
    InstanceKey::new(format!("node-{}", i % 7), format!("svc-{i}"))
}

fn ring(coordinate: Coordinate, size: usize, members: &[InstanceKey]) -> Subset {
    grouped(coordinate, size, 1, members)
}

fn grouped(coordinate: Coordinate, size: usize, groups: u32, members: &[InstanceKey]) -> Subset {
    let mut s = Subset::new(coordinate, size).groups(groups);
    s.set_members(members);
    s
}

fn picked(s: &Subset) -> Vec<InstanceKey> {
    s.select(|_| false).cloned().collect()
}

/// Connections per member when `clients` clients with even coordinates pick `size`.
fn loads(clients: u32, size: usize, members: &[InstanceKey]) -> HashMap<InstanceKey, usize> {
    let mut load: HashMap<InstanceKey, usize> = members.iter().map(|k| (k.clone(), 0)).collect();
    for i in 0..clients {
        let s = ring(Coordinate::new(i, clients).unwrap(), size, members);
        for k in s.select(|_| false) {
            *load.get_mut(k).unwrap() += 1;
        }
    }
    load
}

#[test]
fn rejects_an_index_outside_the_count() {
    assert!(Coordinate::new(3, 3).unwrap_err().is_config());
    assert!(Coordinate::new(0, 0).unwrap_err().is_config());
    assert!(Coordinate::new(2, 3).is_ok());
}

#[test]
fn empty_ring_selects_nothing() {
    let s = Subset::new(Coordinate::from_seed(7), 3);
    assert_eq!(s.select(|_| false).count(), 0);
    assert_eq!(s.aperture(), 0);
}

#[test]
fn small_ring_selects_everyone() {
    let members: Vec<_> = (0..3).map(key).collect();
    let s = ring(Coordinate::new(0, 1).unwrap(), 5, &members);
    let got: BTreeSet<_> = picked(&s).into_iter().collect();
    assert_eq!(got, members.iter().cloned().collect());
}

#[test]
fn aperture_grows_so_every_member_has_a_client() {
    let members: Vec<_> = (0..100).map(key).collect();
    // 4 clients × 2 would leave 92 members idle: each client takes 25.
    let s = ring(Coordinate::new(0, 4).unwrap(), 2, &members);
    assert_eq!(s.aperture(), 25);
    let load = loads(4, 2, &members);
    assert!(load.values().all(|&n| n == 1), "{load:?}");
}

#[test]
fn one_group_is_the_whole_ring() {
    let members: Vec<_> = (0..200).map(key).collect();
    for i in 0..7 {
        let c = Coordinate::new(i, 7).unwrap();
        assert_eq!(
            picked(&ring(c, 9, &members)),
            picked(&grouped(c, 9, 1, &members))
        );
    }
}

#[test]
fn four_groups_spread_100_clients_over_1000_members_within_one() {
    let members: Vec<_> = (0..1000).map(key).collect();
    let mut load: HashMap<InstanceKey, usize> = HashMap::new();
    for i in 0..100 {
        let s = grouped(Coordinate::new(i, 100).unwrap(), 16, 4, &members);
        for k in s.select(|_| false) {
            *load.entry(k.clone()).or_default() += 1;
        }
    }
    assert_eq!(load.len(), 1000, "every member has a client");
    assert!(load.values().all(|&n| (1..=2).contains(&n)), "{load:?}");
}

#[test]
fn insert_and_remove_report_membership() {
    let mut s = Subset::new(Coordinate::from_seed(1), 2);
    assert!(s.insert(key(1)));
    assert!(!s.insert(key(1)));
    assert_eq!(s.len(), 1);
    assert!(s.remove(&key(1)));
    assert!(!s.remove(&key(1)));
    assert!(s.is_empty());
}

#[test]
fn refill_takes_the_next_member_and_keeps_the_rest() {
    let members: Vec<_> = (0..50).map(key).collect();
    let s = ring(Coordinate::new(2, 5).unwrap(), 10, &members);
    let before = picked(&s);
    let out: HashSet<InstanceKey> = [before[0].clone(), before[4].clone()].into();
    let after: Vec<_> = s.select(|k| out.contains(k)).cloned().collect();
    assert_eq!(after.len(), 10);
    let kept: Vec<_> = before.iter().filter(|k| !out.contains(*k)).collect();
    assert!(kept.iter().all(|k| after.contains(k)));
    assert!(after.iter().all(|k| !out.contains(k)));
}

#[test]
fn excluding_everyone_selects_nothing() {
    let members: Vec<_> = (0..20).map(key).collect();
    let s = ring(Coordinate::from_seed(9), 4, &members);
    assert_eq!(s.select(|_| true).count(), 0);
}

fn arb_members() -> impl Strategy<Value = Vec<InstanceKey>> {
    prop::collection::btree_set(0usize..5000, 1..300)
        .prop_map(|ids| ids.into_iter().map(key).collect())
}

proptest! {
    /// The subset depends on the membership only, not on the order it arrived in,
    /// and is built the same by `insert` and `set_members`.
    #[test]
    fn selection_is_deterministic(
        members in arb_members(),
        seed in any::<u64>(),
        size in 1usize..40,
        shuffle in any::<u64>(),
    ) {
        let a = ring(Coordinate::from_seed(seed), size, &members);
        let mut order = members.clone();
        let n = order.len();
        for i in (1..n).rev() {
            order.swap(i, (mix(shuffle ^ i as u64) % (i as u64 + 1)) as usize);
        }
        let mut b = Subset::new(Coordinate::from_seed(seed), size);
        for k in order {
            b.insert(k);
        }
        prop_assert_eq!(picked(&a), picked(&b));
    }

    /// A subset holds `min(aperture, eligible)` distinct members, none excluded.
    #[test]
    fn selection_is_distinct_and_skips_the_excluded(
        members in arb_members(),
        seed in any::<u64>(),
        size in 1usize..40,
        out_mask in any::<u64>(),
    ) {
        let s = ring(Coordinate::from_seed(seed), size, &members);
        let excluded = |k: &InstanceKey| mix(out_mask ^ ring_hash(k)).is_multiple_of(4);
        let got: Vec<_> = s.select(excluded).collect();
        let eligible = members.iter().filter(|k| !excluded(k)).count();
        prop_assert_eq!(got.len(), s.aperture().min(eligible));
        let distinct: HashSet<_> = got.iter().collect();
        prop_assert_eq!(distinct.len(), got.len());
        prop_assert!(got.iter().all(|k| !excluded(k)));
    }

    /// With even coordinates every member carries ⌊aN/n⌋ or ⌈aN/n⌉ connections.
    #[test]
    fn even_coordinates_spread_within_one(
        members in arb_members(),
        clients in 1u32..60,
        size in 1usize..40,
    ) {
        let load = loads(clients, size, &members);
        let n = members.len();
        let aperture = ring(Coordinate::new(0, clients).unwrap(), size, &members).aperture();
        let total = aperture * clients as usize;
        let (lo, hi) = (total / n, total.div_ceil(n));
        prop_assert_eq!(load.values().sum::<usize>(), total);
        prop_assert!(load.values().all(|&c| c >= lo && c <= hi), "{lo}..={hi}: {load:?}");
    }

    /// Removing a member changes each client's subset by at most two members (one
    /// of them the removed one), as long as the aperture stays the same.
    #[test]
    fn removing_a_member_moves_at_most_two_per_client(
        members in prop::collection::btree_set(0usize..5000, 30..300),
        gone in any::<prop::sample::Index>(),
        clients in 1u32..40,
        size in 1usize..20,
    ) {
        let members: Vec<_> = members.into_iter().map(key).collect();
        let gone = members[gone.index(members.len())].clone();
        for i in 0..clients {
            let mut s = ring(Coordinate::new(i, clients).unwrap(), size, &members);
            let before: HashSet<_> = picked(&s).into_iter().collect();
            let aperture = s.aperture();
            s.remove(&gone);
            prop_assume!(s.aperture() == aperture);
            let after: HashSet<_> = picked(&s).into_iter().collect();
            prop_assert!(!after.contains(&gone));
            let added = after.difference(&before).count();
            prop_assert!(added <= 2, "client {i} added {added}");
            // When the removed one was not in the subset, only a shift can move it.
            if !before.contains(&gone) {
                prop_assert!(added <= 1, "client {i} added {added}");
            }
        }
    }

    /// Excluding members never drops a non-excluded member of the subset.
    #[test]
    fn refill_keeps_the_survivors(
        members in arb_members(),
        seed in any::<u64>(),
        size in 1usize..40,
        out_mask in any::<u64>(),
    ) {
        let s = ring(Coordinate::from_seed(seed), size, &members);
        let excluded = |k: &InstanceKey| mix(out_mask ^ ring_hash(k)).is_multiple_of(3);
        let after: HashSet<_> = s.select(excluded).collect();
        for k in s.select(|_| false) {
            prop_assert!(excluded(k) || after.contains(k));
        }
    }
}

proptest! {
    /// With groups, a subset still holds `min(aperture, eligible)` distinct members,
    /// and removing a member leaves the clients of the other ranges untouched.
    #[test]
    fn groups_keep_the_subset_whole_and_churn_local(
        members in prop::collection::btree_set(0usize..5000, 30..300),
        gone in any::<prop::sample::Index>(),
        clients in 1u32..40,
        groups in 1u32..6,
        size in 1usize..20,
    ) {
        let members: Vec<_> = members.into_iter().map(key).collect();
        let gone = members[gone.index(members.len())].clone();
        let effective = groups.min(clients);
        let gone_range = range_of(ring_hash(&gone), effective);
        for i in 0..clients {
            let mut s = grouped(Coordinate::new(i, clients).unwrap(), size, groups, &members);
            let before: Vec<_> = picked(&s);
            prop_assert_eq!(before.len(), s.aperture().min(members.len()));
            prop_assert_eq!(before.iter().collect::<HashSet<_>>().len(), before.len());
            let aperture = s.aperture();
            s.remove(&gone);
            let after: HashSet<_> = picked(&s).into_iter().collect();
            let added = after.difference(&before.iter().cloned().collect()).count();
            prop_assert!(added <= 2, "client {i} added {added}");
            // A client of another range whose window stays inside its range: untouched.
            let own = i % effective;
            let inside = before.iter().all(|k| range_of(ring_hash(k), effective) == own);
            if own != gone_range && inside && s.aperture() == aperture {
                prop_assert_eq!(added, 0, "client {} of range {} moved", i, own);
            }
        }
    }
}
