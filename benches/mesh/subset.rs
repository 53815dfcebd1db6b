//! Scenario 13, subsetting: simulated clients pick their subsets with
//! `balance::Subset` (no connections); connections per instance and churn.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use serde_json::json;
use tonic_discovery::InstanceKey;
use tonic_discovery::balance::{Coordinate, Subset};

use crate::common::{Config, Res, Section};
use crate::overhead::verdict;

const CLIENTS: u32 = 100;
const INSTANCES: usize = 1000;
const K: usize = 16;
const GROUPS: u32 = 4;
/// The target: connections one removed instance moves, % (on average and at worst).
const MAX_MOVED_PCT: f64 = 2.0;

#[derive(Debug, serde::Serialize)]
struct Outcome {
    name: &'static str,
    instances: usize,
    max_per_instance: usize,
    mean_per_instance: f64,
    idle_instances: usize,
    /// Per removed instance: connections moved (added elsewhere), % of all.
    removal_moved_pct: Summary,
    /// Per added instance.
    addition_moved_pct: Summary,
    /// Per excluded (ejected) instance.
    exclusion_moved_pct: Summary,
}

#[derive(Debug, serde::Serialize)]
struct Summary {
    trials: usize,
    mean: f64,
    median: f64,
    max: f64,
}

fn key(i: usize) -> InstanceKey {
    InstanceKey::new(format!("node-{}", i % 50), format!("echo-{i}"))
}

/// The subsets of every client, as one picker sees them.
type Picker = dyn Fn(u32, &[InstanceKey], &dyn Fn(&InstanceKey) -> bool) -> Vec<InstanceKey>;

fn aperture(
    i: u32,
    members: &[InstanceKey],
    out: &dyn Fn(&InstanceKey) -> bool,
) -> Vec<InstanceKey> {
    let mut s = Subset::new(Coordinate::new(i, CLIENTS).expect("index below count"), K);
    s.set_members(members);
    s.select(out).cloned().collect()
}

fn aperture_groups(
    i: u32,
    members: &[InstanceKey],
    out: &dyn Fn(&InstanceKey) -> bool,
) -> Vec<InstanceKey> {
    let coordinate = Coordinate::new(i, CLIENTS).expect("index below count");
    let mut s = Subset::new(coordinate, K).groups(GROUPS);
    s.set_members(members);
    s.select(out).cloned().collect()
}

fn seeded(i: u32, members: &[InstanceKey], out: &dyn Fn(&InstanceKey) -> bool) -> Vec<InstanceKey> {
    let mut s = Subset::new(Coordinate::from_seed(u64::from(i) + 1), K);
    s.set_members(members);
    s.select(out).cloned().collect()
}

/// Reference: rendezvous hashing, each client's `K` highest scores.
fn rendezvous(
    i: u32,
    members: &[InstanceKey],
    out: &dyn Fn(&InstanceKey) -> bool,
) -> Vec<InstanceKey> {
    let mut scored: Vec<(u64, &InstanceKey)> = members
        .iter()
        .filter(|k| !out(k))
        .map(|k| (score(i, k), k))
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().take(K).map(|(_, k)| k.clone()).collect()
}

fn score(client: u32, key: &InstanceKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(client);
    for b in key.id().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

fn all(
    pick: &Picker,
    members: &[InstanceKey],
    out: &dyn Fn(&InstanceKey) -> bool,
) -> Vec<HashSet<InstanceKey>> {
    (0..CLIENTS)
        .map(|i| pick(i, members, out).into_iter().collect())
        .collect()
}

/// Connections that appear in `after` and were not in `before`, summed over clients.
fn moved(before: &[HashSet<InstanceKey>], after: &[HashSet<InstanceKey>]) -> usize {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.difference(b).count())
        .sum()
}

fn summary(mut v: Vec<f64>) -> Summary {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Summary {
        trials: n,
        mean: v.iter().sum::<f64>() / n.max(1) as f64,
        median: v.get(n / 2).copied().unwrap_or(0.0),
        max: v.last().copied().unwrap_or(0.0),
    }
}

fn simulate(name: &'static str, pick: &Picker, trials: usize, n: usize) -> Outcome {
    let members: Vec<InstanceKey> = (0..n).map(key).collect();
    let none = |_: &InstanceKey| false;
    let base = all(pick, &members, &none);
    let total: usize = base.iter().map(HashSet::len).sum();
    let mut load: HashMap<&InstanceKey, usize> = members.iter().map(|k| (k, 0)).collect();
    for k in base.iter().flatten() {
        *load.entry(k).or_default() += 1;
    }
    let pct = |n: usize| n as f64 * 100.0 / total as f64;
    let step = (n / trials).max(1);
    let (mut removal, mut addition, mut exclusion) = (Vec::new(), Vec::new(), Vec::new());
    for t in (0..n).step_by(step).take(trials) {
        let gone = &members[t];
        let fewer: Vec<InstanceKey> = members.iter().filter(|k| *k != gone).cloned().collect();
        removal.push(pct(moved(&base, &all(pick, &fewer, &none))));
        let mut more = members.clone();
        more.push(key(n + t));
        addition.push(pct(moved(&base, &all(pick, &more, &none))));
        exclusion.push(pct(moved(&base, &all(pick, &members, &|k| k == gone))));
    }
    Outcome {
        name,
        instances: n,
        max_per_instance: load.values().copied().max().unwrap_or(0),
        mean_per_instance: total as f64 / n as f64,
        idle_instances: load.values().filter(|&&n| n == 0).count(),
        removal_moved_pct: summary(removal),
        addition_moved_pct: summary(addition),
        exclusion_moved_pct: summary(exclusion),
    }
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let trials = cfg.pick(200, 20);
    let outcomes = tokio::task::spawn_blocking(move || {
        let n = INSTANCES;
        vec![
            simulate(
                "deterministic aperture, `Coordinate::new(i, 100)`",
                &aperture,
                trials,
                n,
            ),
            simulate("the same, `.groups(4)`", &aperture_groups, trials, n),
            simulate(
                "random aperture, `Coordinate::from_seed(i)`",
                &seeded,
                trials,
                n,
            ),
            simulate(
                "reference: rendezvous hashing (top 16 scores)",
                &rendezvous,
                trials,
                n,
            ),
            simulate(
                "deterministic aperture, `Coordinate::new(i, 100)`",
                &aperture,
                trials,
                1009,
            ),
            simulate("the same, `.groups(4)`", &aperture_groups, trials, 1009),
        ]
    })
    .await?;
    Ok(section(&outcomes))
}

fn section(outcomes: &[Outcome]) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "**{CLIENTS} simulated clients × {INSTANCES} instances, k = {K}** (`balance::Subset`, no connections). \
         Moved = connections a client opens that it did not have before (each replaces one it closes), summed \
         over the clients, as % of all {} connections; per removed, added or excluded instance, over {} instances \
         spread over the ring (mean / median / max).\n",
        CLIENTS as usize * K,
        outcomes.first().map_or(0, |o| o.removal_moved_pct.trials)
    );
    md.push_str(
        "| subsets | instances | max / mean per instance | idle instances | one removed: moved % | one added: moved % | one excluded: moved % |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let s = |s: &Summary| format!("{:.2} / {:.2} / {:.2}", s.mean, s.median, s.max);
    for o in outcomes {
        let _ = writeln!(
            md,
            "| {} | {} | {} / {:.2} = {:.2} | {} | {} | {} | {} |",
            o.name,
            o.instances,
            o.max_per_instance,
            o.mean_per_instance,
            o.max_per_instance as f64 / o.mean_per_instance,
            o.idle_instances,
            s(&o.removal_moved_pct),
            s(&o.addition_moved_pct),
            s(&o.exclusion_moved_pct)
        );
    }
    md.push('\n');
    for o in outcomes
        .iter()
        .filter(|o| o.name.contains("aperture, `Coordinate::new") || o.name.contains("groups"))
    {
        let ratio = o.max_per_instance as f64 / o.mean_per_instance;
        // The best integer assignment: every instance at ⌊mean⌋ or ⌈mean⌉.
        let best = o.mean_per_instance.ceil() / o.mean_per_instance;
        let bar = best.max(1.25);
        let _ = writeln!(
            md,
            "- {} ({} instances): max/mean {ratio:.2} (target ≤ {bar:.2}: {}); one removed instance moves \
             {:.2}% of the connections on average, {:.2}% at worst (target ≤ {MAX_MOVED_PCT:.0}%: {} on average, {} at worst).",
            o.name,
            o.instances,
            verdict(ratio <= bar + 1e-9),
            o.removal_moved_pct.mean,
            o.removal_moved_pct.max,
            verdict(o.removal_moved_pct.mean <= MAX_MOVED_PCT),
            verdict(o.removal_moved_pct.max <= MAX_MOVED_PCT),
        );
    }
    let _ = writeln!(
        md,
        "\nWith 1.6 connections per instance on average, 2/1.6 = 1.25 is the best any integer assignment \
         can do (for 1,009 instances 2/1.59 = 1.26, the bar used there). Every client start depends on `n` (the price of the even \
         spread), so a removal shifts the window (one connection) of each client whose start crosses an \
         instance boundary; with `groups(4)` only the clients of the removed instance's range rescale. \
         Rendezvous hashing moves only the removed instance's connections but piles up to 9 onto one instance."
    );
    Section {
        key: "13-subset",
        json: json!({
            "clients": CLIENTS,
            "instances": INSTANCES,
            "k": K,
            "outcomes": outcomes,
            "target_moved_pct": MAX_MOVED_PCT,
        }),
        markdown: md,
    }
}
