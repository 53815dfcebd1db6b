//! Scenario 2, propagation: under 1,000 requests/s per contender, fail one instance's
//! check, and separately deregister it; time from the registry change to the last
//! response that instance served, and from registration to its first response.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep};

use crate::common::{self, Config, Pacer, Registry, Res, Section, ms_between};
use crate::load::{Chan, Event, OpenLoad, boxed};
use crate::stats::quantile;
use tonic_discovery::balance::BalancedChannel;

pub const RATE: u32 = 1000;
const WAIT: Duration = Duration::from_secs(10);
/// The least time between two registry changes (see [`Pacer`]).
pub const GAP: Duration = Duration::from_millis(1050);
/// The target for removal: p99 below this, ms.
const REMOVAL_TARGET_MS: f64 = 50.0;

/// A registry change made during the load.
#[derive(Debug, Clone)]
pub struct Marker {
    pub kind: &'static str,
    pub victim: String,
    pub at: Instant,
}

/// Latencies (ms) per (contender, kind).
pub type Results = Vec<(String, &'static str, Vec<f64>)>;

/// Requests and failures per contender (or an aborted run).
pub type Errors = Vec<(String, usize, usize)>;

/// Our channel and tonic's balancer under the same open-loop load.
pub struct Contenders {
    loads: [OpenLoad; 2],
}

impl Contenders {
    /// Waits until both contenders reach every instance of `ids`, starts the load on
    /// both, and lets the watches settle.
    pub async fn start(ours: &BalancedChannel, fed: Chan, ids: &[String]) -> Res<Contenders> {
        common::wait_ready(ours, ids.len()).await?;
        common::until_all_answer(&fed, ids).await?;
        let timeout = Duration::from_secs(2);
        let loads = [
            OpenLoad::start(boxed(ours.clone()), RATE, timeout),
            OpenLoad::start(fed, RATE, timeout),
        ];
        // Steady state first: the watches' start-up queries used their re-query budget.
        sleep(Duration::from_secs(2)).await;
        Ok(Contenders { loads })
    }

    /// Stops the load and measures every marker of each kind, per contender.
    pub async fn finish(
        self,
        names: [&str; 2],
        kinds: &[&'static str],
        markers: &[Marker],
    ) -> (Results, Errors) {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        for (name, load) in names.iter().zip(self.loads) {
            let events = load.finish().await;
            errors.push((name.to_string(), events.len(), failed(&events)));
            for kind in kinds {
                out.push((name.to_string(), *kind, analyse(&events, markers, kind)));
            }
        }
        (out, errors)
    }
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let trials = cfg.pick(50, 3);
    #[cfg_attr(not(any(feature = "etcd", feature = "nacos")), allow(unused_mut))]
    let (mut results, mut errors) = consul(trials).await?;
    #[cfg(feature = "etcd")]
    {
        match crate::propagation_etcd::run(trials).await {
            Ok((r, e)) => {
                results.extend(r);
                errors.extend(e);
            }
            Err(e) => {
                eprintln!("  etcd propagation failed: {e}");
                errors.push((format!("etcd run aborted: {e}"), 0, 0));
            }
        }
    }
    #[cfg(feature = "nacos")]
    {
        match crate::propagation_nacos::run(trials).await {
            Ok((r, e)) => {
                results.extend(r);
                errors.extend(e);
            }
            Err(e) => {
                eprintln!("  nacos propagation failed: {e}");
                errors.push((format!("nacos run aborted: {e}"), 0, 0));
            }
        }
    }
    let chart = cfg.out.join("propagation.svg");
    crate::chart::cdf(&chart, &results)?;
    Ok(section(trials, &results, &errors))
}

async fn consul(trials: usize) -> Res<(Results, Errors)> {
    let registry = Registry::start().await?;
    let servers = common::servers("p", 3).await?;
    let mut handles = Vec::new();
    for s in &servers {
        handles.push(Some(registry.register("prop", s).await?));
    }
    let ours = registry.ours("prop");
    let ids = common::ids(&servers);
    let contenders = Contenders::start(&ours, registry.tonic_fed("prop"), &ids).await?;
    let mut markers = Vec::new();
    let mut pace = Pacer::new(GAP);
    for i in 0..trials {
        let (v, id) = (i % 3, ids[i % 3].as_str());
        let check = handles[v].as_ref().ok_or("handle")?.check_id().to_owned();
        let at = pace.next().await;
        if !registry.dev.set_check_status(&check, "critical", "bench") {
            return Err(format!("no check {check}").into());
        }
        removed(&ours, id).await?;
        markers.push(marker("check", id, at));
        let at = pace.next().await;
        if !registry.dev.set_check_status(&check, "passing", "") {
            return Err(format!("no check {check}").into());
        }
        added(&ours, id).await?;
        markers.push(marker(RESTORE, id, at));

        let at = pace.next().await;
        handles[v].take().ok_or("handle")?.deregister().await?;
        removed(&ours, id).await?;
        markers.push(marker("deregister", id, at));
        let at = pace.next().await;
        handles[v] = Some(registry.register("prop", &servers[v]).await?);
        added(&ours, id).await?;
        markers.push(marker("register", id, at));
    }
    let names = ["ours (consul)", "tonic-balance (consul-fed)"];
    let kinds = ["check", "deregister", "register"];
    let results = contenders.finish(names, &kinds, &markers).await;
    drop(handles);
    Ok(results)
}

/// The kind of a marker that only ends the window of the change before it.
pub const RESTORE: &str = "restore";

pub fn marker(kind: &'static str, victim: &str, at: Instant) -> Marker {
    Marker {
        kind,
        victim: victim.to_owned(),
        at,
    }
}

/// Waits until `ours` dropped `id`.
pub async fn removed(ours: &tonic_discovery::balance::BalancedChannel, id: &str) -> Res<()> {
    common::wait_for(WAIT, &format!("{id} removed"), || async {
        !common::holds(ours, id)
    })
    .await
}

/// Waits until `ours` holds `id` ready.
pub async fn added(ours: &tonic_discovery::balance::BalancedChannel, id: &str) -> Res<()> {
    common::wait_for(WAIT, &format!("{id} ready"), || async {
        common::holds_ready(ours, id)
    })
    .await
}

/// Waits until `ours` holds exactly `n` endpoints (all ready when `ready`).
/// For registries whose instance key is not the server's id (etcd, Nacos).
pub async fn count(
    ours: &tonic_discovery::balance::BalancedChannel,
    n: usize,
    ready: bool,
) -> Res<()> {
    common::wait_for(WAIT, &format!("{n} endpoints"), || async {
        let eps = ours.endpoints();
        eps.len() == n && (!ready || common::ready(ours) == n)
    })
    .await
}

pub fn failed(events: &[Event]) -> usize {
    events.iter().filter(|e| e.outcome.is_err()).count()
}

/// Per marker of `kind`: removal = change → last response from the victim (0 when
/// none came after the change); registration = start → first response from it (a
/// trial without one is left out, which the trial count shows). A marker's window ends
/// at the next registry change of the run (the next marker, `RESTORE` included), so
/// both contenders are measured over the same time, whenever ours was done.
pub fn analyse(events: &[Event], markers: &[Marker], kind: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for (i, m) in markers.iter().enumerate().filter(|(_, m)| m.kind == kind) {
        let end = markers.get(i + 1).map_or(m.at + GAP, |next| next.at);
        let from_victim = events.iter().filter(|e| {
            e.outcome.as_deref() == Ok(m.victim.as_str())
                && e.sent >= m.at - Duration::from_secs(1)
                && e.sent < end
        });
        if kind == "register" {
            let first = from_victim.filter(|e| e.sent >= m.at).map(|e| e.done).min();
            if let Some(first) = first {
                out.push(ms_between(m.at, first));
            }
        } else {
            let last = from_victim.map(|e| e.done).max();
            out.push(last.map_or(0.0, |l| ms_between(m.at, l).max(0.0)));
        }
    }
    out
}

fn section(trials: usize, results: &Results, errors: &[(String, usize, usize)]) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "{trials} trials per kind; open-loop load of {RATE} requests/s on each contender at the same time \
         (both see the same registry change). Removal: registry change → last response served by that \
         instance before the next change (0 when none came after the change; resolution ≈ 3 ms, the interval between requests to \
         one instance). Changes are at least 1.05 s apart, so that the discovery's re-query limit (2 queries, \
         refilled once per second, the default) never delays a measured change. Registration: register call → first response from the new instance. Quantiles are nearest-rank: \
         with 50 trials, p99 is the largest. \
         tonic-balance is tonic's `balance_channel` fed by the same `consul::Discovery` \
         (`balance::tonic_balancer::balance_channel`). Chart: [propagation.svg](benches/results/propagation.svg).\n"
    );
    md.push_str("| contender | change | trials | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n");
    let mut rows = Vec::new();
    for (name, kind, lat) in results {
        let mut v = lat.clone();
        v.sort_by(f64::total_cmp);
        let q = |x| quantile(&v, x);
        let _ = writeln!(
            md,
            "| {name} | {kind} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            v.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        );
        rows.push(json!({"contender": name, "kind": kind, "latencies_ms_in_trial_order": lat}));
    }
    let _ = writeln!(
        md,
        "\nFailed requests during the whole run (target for removal: p99 < {REMOVAL_TARGET_MS:.0} ms):\n"
    );
    for (name, total, failed) in errors {
        let _ = writeln!(md, "- {name}: {failed} of {total}");
    }
    Section {
        key: "2-propagation",
        json: json!({"trials": trials, "rate": RATE, "results": rows,
            "target_removal_p99_ms": REMOVAL_TARGET_MS,
            "errors": errors.iter().map(|(n, t, f)| json!({"contender": n, "requests": t, "failed": f})).collect::<Vec<_>>()}),
        markdown: md,
    }
}
