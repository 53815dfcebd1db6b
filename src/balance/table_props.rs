//! A model-based property test of the table callers and the worker draw from: random
//! inserts, removals, service changes, weight and tier changes and probes falling
//! due, checked after every step against a plain model.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::tests::stats;
use super::*;

#[derive(Debug, Clone)]
enum Op {
    /// Inserts the endpoint, or moves it (weight, tier) if it is there.
    Insert {
        id: u8,
        weight: u32,
        tier: usize,
    },
    Remove(u8),
    InService(u8, bool),
    /// Its ejection ran out: a probe is due.
    ProbeDue(u8),
    /// The worker takes the next probe due.
    TakeProbe,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12, 1u32..4, 0usize..TIERS).prop_map(|(id, weight, tier)| Op::Insert {
            id,
            weight,
            tier
        }),
        (0u8..12).prop_map(Op::Remove),
        (0u8..12, any::<bool>()).prop_map(|(id, live)| Op::InService(id, live)),
        (0u8..12).prop_map(Op::ProbeDue),
        Just(Op::TakeProbe),
    ]
}

#[derive(Default)]
struct Model {
    endpoints: HashMap<u8, (Arc<EndpointStats>, usize, bool)>,
    probes: VecDeque<u8>,
}

fn key(id: u8) -> InstanceKey {
    InstanceKey::new("n", format!("e{id}"))
}

fn apply(registry: &Registry, model: &mut Model, op: &Op) {
    match *op {
        Op::Insert { id, weight, tier } => {
            let (s, live) = match model.endpoints.get(&id) {
                Some((s, _, live)) => (s.clone(), *live),
                None => (stats(&format!("e{id}")), false),
            };
            registry.insert(key(id), s.clone(), weight, tier);
            model.endpoints.insert(id, (s, tier, live));
        }
        Op::Remove(id) => {
            registry.remove(&key(id));
            model.endpoints.remove(&id);
            model.probes.retain(|&p| p != id);
        }
        Op::InService(id, live) => {
            if let Some((s, _, l)) = model.endpoints.get_mut(&id) {
                registry.set_in_service(&key(id), s, live);
                *l = live;
            }
        }
        Op::ProbeDue(id) => {
            if let Some((s, _, _)) = model.endpoints.get(&id) {
                s.eject();
                s.allow_probe();
                registry.queue_probe(s);
                if !model.probes.contains(&id) {
                    model.probes.push_back(id);
                }
            }
        }
        Op::TakeProbe => {
            let taken = registry.next_probe(|_| Probe::Take);
            assert_eq!(
                taken.map(|s| s.key.clone()),
                model.probes.pop_front().map(key),
                "probes are taken in the order they fell due"
            );
        }
    }
}

fn check(registry: &Registry, model: &Model, rng: &mut StdRng) {
    let (total, live) = registry.counts();
    for tier in 0..TIERS {
        let in_tier = model.endpoints.values().filter(|(_, t, _)| *t == tier);
        assert_eq!(total[tier], in_tier.clone().count(), "tier {tier} size");
        let live_model = in_tier.filter(|(_, _, l)| *l).count();
        assert_eq!(live[tier], live_model, "tier {tier} in service");
    }
    // Draws only ever offer endpoints in service.
    for _ in 0..8 {
        if let Ok(pair) = registry.draw(rng, false, |_| Candidate::Take) {
            for s in std::iter::once(&pair.a.0).chain(pair.b.as_ref().map(|b| &b.0)) {
                let id: u8 = s.key.id()[1..].parse().expect("an id");
                assert!(model.endpoints[&id].2, "{id} drawn out of service");
            }
        }
    }
    assert_eq!(registry.probes_due(), !model.probes.is_empty());
    // No connection in this model: the fast path finds none, and gives back any slot
    // it reserved.
    assert!(registry.pick_direct().is_none());
    for (s, _, _) in model.endpoints.values() {
        assert_eq!(s.open_streams(), 0, "a reserved slot was not given back");
    }
    assert_eq!(registry.snapshot().len(), model.endpoints.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_table_follows_its_model(ops in proptest::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let registry = Registry::default();
            let mut model = Model::default();
            let mut rng = StdRng::seed_from_u64(1);
            for op in &ops {
                apply(&registry, &mut model, op);
                check(&registry, &model, &mut rng);
            }
            // Every probe still due is taken, in order, within as many picks.
            while !model.probes.is_empty() {
                apply(&registry, &mut model, &Op::TakeProbe);
            }
            assert!(!registry.probes_due());
        });
    }
}
