//! Scenario 12, worker at scale: the balancer's worker holding 10,000 endpoints (2,000
//! connected to four Echo servers, the rest at an address that refuses, backing off).
//! What one discovery change costs the worker, and a full replacement of the 10,000
//! (new keys inserted, then the old removed, all at once) while calls flow.

use std::fmt::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::{Instance, InstanceKey};
use tonic_discovery_testkit::TestEchoServer;
use tower::discover::Change;

use crate::common::{self, Config, Res, Section};
use crate::load::{Event, OpenLoad, boxed};
use crate::overhead::verdict;
use crate::stats::{self, Spread, q_us};

/// Targets: one change's worker time (the worst run's median), µs; a full replacement
/// applied, ms.
const MAX_ONE_CHANGE_US: f64 = 50.0;
const MAX_REPLACE_MS: f64 = 100.0;

type Item = Result<Change<InstanceKey, Instance>, std::convert::Infallible>;

/// What the worker and its discovery saw: when the last change was taken, and how long
/// the worker spent in each poll.
#[derive(Debug, Default)]
struct Probe {
    /// Nanoseconds (since `epoch`) when the discovery last handed a change over.
    taken_ns: AtomicU64,
    /// Changes handed over.
    taken: AtomicU64,
    /// Worker time, in nanoseconds, in all polls.
    busy_ns: AtomicU64,
    /// For each poll that took changes: (changes taken, poll time in ns).
    change_polls: Mutex<Vec<(u64, u64)>>,
    /// For each change taken: ns from handing it over to the worker's next look at
    /// the discovery, which it takes right after applying the change (table, ready
    /// cache, metrics), before anything else the poll does.
    apply_ns: Mutex<Vec<u64>>,
}

/// The discovery: changes sent through a channel, counted as the worker takes them.
struct Feed {
    rx: mpsc::UnboundedReceiver<Item>,
    probe: Arc<Probe>,
    epoch: Instant,
    /// When the last change was handed over, until the worker polls again.
    handed: Option<Instant>,
}

impl Stream for Feed {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if let Some(handed) = self.handed.take() {
            let ns = handed.elapsed().as_nanos() as u64;
            self.probe.apply_ns.lock().expect("lock").push(ns);
        }
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.handed = Some(Instant::now());
            let ns = self.epoch.elapsed().as_nanos() as u64;
            self.probe.taken_ns.store(ns, Ordering::Relaxed);
            self.probe.taken.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

fn insert(i: usize, addr: &str) -> Item {
    let key = InstanceKey::new("n", format!("k{i}"));
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let instance = Instance::new(key.clone(), host, port.parse().expect("port"));
    Ok(Change::Insert(key, instance))
}

fn remove(i: usize) -> Item {
    Ok(Change::Remove(InstanceKey::new("n", format!("k{i}"))))
}

#[derive(Debug, Default, serde::Serialize)]
struct Runs {
    one_change_us_p50: Vec<f64>,
    one_change_us_p99: Vec<f64>,
    apply_us_p50: Vec<f64>,
    apply_us_p99: Vec<f64>,
    replace_ms: Vec<f64>,
    replace_worker_ms: Vec<f64>,
    replace_p99_us: Vec<f64>,
    replace_max_us: Vec<f64>,
    replace_failed: Vec<f64>,
    replace_calls: Vec<f64>,
    steady_p99_us: Vec<f64>,
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let (total, connected) = (cfg.pick(10_000, 2_000), cfg.pick(2_000, 400));
    let servers = common::servers("k", 4).await?;
    let mut runs = Runs::default();
    for run in 0..cfg.runs() {
        trial(&servers, total, connected, run, &mut runs).await?;
    }
    Ok(section(cfg, total, connected, &runs))
}

fn address(servers: &[TestEchoServer], i: usize, connected: usize) -> String {
    if i.is_multiple_of(5) && i / 5 < connected {
        servers[(i / 5) % servers.len()].addr().to_string()
    } else {
        // Nothing listens on port 1: these endpoints back off.
        "127.0.0.1:1".to_owned()
    }
}

async fn trial(
    servers: &[TestEchoServer],
    total: usize,
    connected: usize,
    run: usize,
    runs: &mut Runs,
) -> Res<()> {
    let probe = Arc::new(Probe::default());
    let epoch = Instant::now();
    let (tx, rx) = mpsc::unbounded_channel();
    let feed = Feed {
        rx,
        probe: probe.clone(),
        epoch,
        handed: None,
    };
    let (channel, worker) = BalancedChannel::builder("worker").build_with_worker(feed)?;
    let timed = {
        let probe = probe.clone();
        let mut worker = Box::pin(worker);
        std::future::poll_fn(move |cx| {
            let (start, before) = (Instant::now(), probe.taken.load(Ordering::Relaxed));
            let out = worker.as_mut().poll(cx);
            let ns = start.elapsed().as_nanos() as u64;
            probe.busy_ns.fetch_add(ns, Ordering::Relaxed);
            let took = probe.taken.load(Ordering::Relaxed) - before;
            if took > 0 {
                probe.change_polls.lock().expect("lock").push((took, ns));
            }
            out
        })
    };
    tokio::spawn(timed);

    // One in five endpoints connected (up to `connected`), spread over the servers.
    for i in 0..total {
        tx.send(insert(i, &address(servers, i, connected)))?;
    }
    wait_ready(&channel, connected).await?;
    // Let the refused endpoints' backoff grow, so their reconnects are rare.
    sleep(Duration::from_secs(2)).await;

    // One change at a time: a new instance (refused address), then its removal.
    probe.change_polls.lock().expect("lock").clear();
    probe.apply_ns.lock().expect("lock").clear();
    for j in 0..200 {
        let i = total * 10 + j;
        tx.send(insert(i, "127.0.0.1:1"))?;
        sleep(Duration::from_millis(5)).await;
        tx.send(remove(i))?;
        sleep(Duration::from_millis(5)).await;
    }
    let singles: Vec<f64> = probe
        .change_polls
        .lock()
        .expect("lock")
        .iter()
        .filter(|(n, _)| *n == 1)
        .map(|(_, ns)| *ns as f64 / 1e3)
        .collect();
    let (p50, p99) = quantiles(&singles);
    runs.one_change_us_p50.push(p50);
    runs.one_change_us_p99.push(p99);
    let applies: Vec<f64> = (probe.apply_ns.lock().expect("lock").iter())
        .map(|ns| *ns as f64 / 1e3)
        .collect();
    let (apply_p50, apply_p99) = quantiles(&applies);
    runs.apply_us_p50.push(apply_p50);
    runs.apply_us_p99.push(apply_p99);

    // Steady state, then the full replacement, under open-loop load.
    let load = OpenLoad::start(boxed(channel.clone()), 1000, Duration::from_secs(5));
    sleep(Duration::from_secs(1)).await;
    let busy_before = probe.busy_ns.load(Ordering::Relaxed);
    let sent = Instant::now();
    let expected = probe.taken.load(Ordering::Relaxed) + 2 * total as u64;
    for i in 0..total {
        tx.send(insert(total + i, &address(servers, i, connected)))?;
    }
    for i in 0..total {
        tx.send(remove(i))?;
    }
    let deadline = sent + Duration::from_secs(30);
    while probe.taken.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline {
            return Err("the replacement was not applied within 30 s".into());
        }
        sleep(Duration::from_millis(1)).await;
    }
    let applied = epoch + Duration::from_nanos(probe.taken_ns.load(Ordering::Relaxed));
    let busy = probe.busy_ns.load(Ordering::Relaxed) - busy_before;
    wait_ready(&channel, connected).await?;
    sleep(Duration::from_secs(1)).await;
    let events = load.finish().await;
    let during: Vec<&Event> = events
        .iter()
        .filter(|e| e.sent >= sent && e.sent <= applied)
        .collect();
    let steady: Vec<&Event> = events.iter().filter(|e| e.sent < sent).collect();
    let (p99_during, max_during) = latency(&during);
    runs.replace_ms.push(common::ms_between(sent, applied));
    runs.replace_worker_ms.push(busy as f64 / 1e6);
    runs.replace_p99_us.push(p99_during);
    runs.replace_max_us.push(max_during);
    runs.replace_calls.push(during.len() as f64);
    runs.replace_failed
        .push(events.iter().filter(|e| e.outcome.is_err()).count() as f64);
    runs.steady_p99_us.push(latency(&steady).0);
    eprintln!(
        "  run {run}: one change p50 {p50:.1} µs p99 {p99:.1} µs (applying it: p50 {apply_p50:.1} µs); replacement of {total} in {:.1} ms \
         ({:.1} ms of worker time), p99 during {p99_during:.0} µs, {} failed",
        runs.replace_ms[run], runs.replace_worker_ms[run], runs.replace_failed[run]
    );
    drop(tx);
    Ok(())
}

async fn wait_ready(channel: &BalancedChannel, n: usize) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = channel
            .endpoints()
            .iter()
            .filter(|e| e.state() == EndpointState::Ready)
            .count();
        if ready >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{ready} of {n} endpoints ready after 60 s").into());
        }
        sleep(Duration::from_millis(50)).await;
    }
}

fn quantiles(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    (at(0.5).unwrap_or(f64::NAN), at(0.99).unwrap_or(f64::NAN))
}

fn latency(events: &[&Event]) -> (f64, f64) {
    let mut h = stats::hist();
    for e in events {
        stats::record(&mut h, e.latency());
    }
    (q_us(&h, 0.99), h.max() as f64 / 1e3)
}

fn section(cfg: &Config, total: usize, connected: usize, r: &Runs) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Ours alone, its worker timed poll by poll; {total} endpoints, {connected} of them connected to four Echo \
         servers and the rest at an address that refuses (backing off). {} run(s); min / median / max.\n",
        cfg.runs()
    );
    md.push_str("| measure | value |\n|---|---|\n");
    let rows: [(&str, &Vec<f64>, usize); 11] = [
        (
            "one change: worker poll that applied it, p50 µs",
            &r.one_change_us_p50,
            1,
        ),
        ("one change: p99 µs", &r.one_change_us_p99, 1),
        (
            "one change: applying it (table, endpoint set), p50 µs",
            &r.apply_us_p50,
            1,
        ),
        ("applying it: p99 µs", &r.apply_us_p99, 1),
        (
            "full replacement (2 × endpoints changes): sent → last applied ms",
            &r.replace_ms,
            1,
        ),
        ("full replacement: worker time ms", &r.replace_worker_ms, 1),
        (
            "calls sent during the replacement (1,000/s)",
            &r.replace_calls,
            0,
        ),
        ("their p99 µs", &r.replace_p99_us, 0),
        ("their max µs", &r.replace_max_us, 0),
        ("p99 before it µs", &r.steady_p99_us, 0),
        ("failed calls", &r.replace_failed, 0),
    ];
    for (name, v, digits) in rows {
        let _ = writeln!(md, "| {name} | {} |", Spread::of(v).show(digits));
    }
    let one = Spread::of(&r.one_change_us_p50).max;
    let apply = Spread::of(&r.apply_us_p50).max;
    let replace = Spread::of(&r.replace_ms).max;
    let _ = writeln!(
        md,
        "\nTargets: one change at {total} endpoints ≤ {MAX_ONE_CHANGE_US:.0} µs of worker time, counted two ways: \
         the whole poll that applied it (worst run's median: {one:.1} µs, {}), and applying the change \
         itself (worst run's median: {apply:.1} µs, {}); a full replacement applied in ≤ {MAX_REPLACE_MS:.0} ms \
         while calls flow (worst: {replace:.0} ms, {}). The poll that applies a change also does whatever else \
         the wake-up brought (the refused endpoints' reconnects, the new endpoint's first connect), so it \
         bounds the change's cost from above; applying it is the time from the discovery handing the \
         change over to the worker's next look at the discovery, which it takes right after the table \
         and the worker's endpoint set have the change. Changes apply 256 per wake-up, with the calls waiting \
         served in between.",
        verdict(one <= MAX_ONE_CHANGE_US),
        verdict(apply <= MAX_ONE_CHANGE_US),
        verdict(replace <= MAX_REPLACE_MS)
    );
    Section {
        key: "12-worker",
        json: json!({"endpoints": total, "connected": connected, "runs": r,
            "target_one_change_us": MAX_ONE_CHANGE_US, "target_replace_ms": MAX_REPLACE_MS}),
        markdown: md,
    }
}
