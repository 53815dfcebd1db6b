//! Scenario 15, saturation: 256 callers in a closed loop over 4 servers that each
//! allow 8 concurrent streams (`SETTINGS_MAX_CONCURRENT_STREAMS = 8`) and take 1 ms a
//! call: 32 calls can be served at a time, the other 224 wait. Whether a call is ever
//! sent to a connection at its limit (it would queue inside hyper, beyond the
//! balancer's view), whether any call fails fast while streams free up, and the
//! latency. tonic's balancer over the same servers beside it.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::source::StaticList;
use tonic_discovery_testkit::TestEchoServer;

use crate::common::{self, Config, Res, Section};
use crate::load::{Chan, boxed, closed_loop};
use crate::overhead::verdict;
use crate::stats::q_us;

const CALLERS: usize = 256;
const LIMIT: u32 = 8;
const SERVERS: usize = 4;

#[derive(Debug, Default)]
struct Run {
    ok: u64,
    errors: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The most streams the channel had open on one endpoint, sampled every 1 ms.
    max_open: usize,
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let mut servers = Vec::new();
    for i in 0..SERVERS {
        let server = TestEchoServer::builder(format!("sat{i}"))
            .max_concurrent_streams(LIMIT)
            .start()
            .await?;
        server.service().set_delay(Duration::from_millis(1));
        servers.push(server);
    }
    let (warm, dur) = (
        Duration::from_millis(cfg.pick(1000, 300)),
        Duration::from_millis(cfg.pick(5000, 1000)),
    );
    let (_list, ours) = ours(&servers)?;
    common::wait_ready(&ours, SERVERS).await?;
    let ours_run = measure(boxed(ours.clone()), Some(&ours), warm, dur).await;
    let tonic_run = measure(common::tonic_list(&servers)?, None, warm, dur).await;

    let mut md = format!(
        "{CALLERS} callers in a closed loop, {SERVERS} servers that each advertise \
         `SETTINGS_MAX_CONCURRENT_STREAMS = {LIMIT}` and answer after 1 ms: {} calls fit at a \
         time, the rest wait. {:.1} s measured after {:.1} s of warm-up. ours = \
         `BalancedChannel` (defaults: fail-fast after 5 s with nothing able to take a call), \
         tonic-balance = `Channel::balance_list`. Open streams: the most the channel had open \
         on one endpoint, read every 1 ms (`EndpointInfo::open_streams`); above {LIMIT}, calls \
         queue inside hyper's connection, where the balancer cannot move them.\n\n\
         | contender | calls | failed | calls/s | p50 ms | p99 ms | most open streams on one endpoint |\n\
         |---|---|---|---|---|---|---|\n",
        SERVERS * LIMIT as usize,
        dur.as_secs_f64(),
        warm.as_secs_f64()
    );
    for (name, r) in [("tonic-balance", &tonic_run), ("ours", &ours_run)] {
        let open = if name == "ours" {
            r.max_open.to_string()
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {:.0} | {:.2} | {:.2} | {open} |",
            r.ok, r.errors, r.rate, r.p50_ms, r.p99_ms
        );
    }
    let _ = writeln!(
        md,
        "\nTargets, ours: no call sent beyond a connection's limit — most open {} of {LIMIT} \
         ({}); no call failed while streams free up — {} failed ({}).",
        ours_run.max_open,
        verdict(ours_run.max_open <= LIMIT as usize),
        ours_run.errors,
        verdict(ours_run.errors == 0),
    );
    let json = json!({
        "callers": CALLERS,
        "servers": SERVERS,
        "limit": LIMIT,
        "ours": to_json(&ours_run),
        "tonic_balance": to_json(&tonic_run),
    });
    Ok(Section {
        key: "15-saturation",
        json,
        markdown: md,
    })
}

fn to_json(r: &Run) -> serde_json::Value {
    json!({
        "ok": r.ok,
        "errors": r.errors,
        "rate": r.rate,
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "max_open": r.max_open,
    })
}

/// Ours over a `StaticList` of the servers (kept by the caller while the channel runs).
fn ours(servers: &[TestEchoServer]) -> Res<(StaticList, BalancedChannel)> {
    let list = StaticList::from_addrs(servers.iter().map(|s| s.addr().to_string()))?;
    let channel = BalancedChannel::builder("saturation")
        .buffer_size(CALLERS * 2)
        .build(list.discovery("saturation"))?;
    Ok((list, channel))
}

async fn measure(chan: Chan, ours: Option<&BalancedChannel>, warm: Duration, dur: Duration) -> Run {
    let max_open = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = ours.map(|ours| {
        let (ours, max_open, stop) = (ours.clone(), max_open.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let most = ours
                    .endpoints()
                    .iter()
                    .map(|e| e.open_streams())
                    .max()
                    .unwrap_or(0);
                max_open.fetch_max(most, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    });
    let closed = closed_loop(&chan, CALLERS, warm, dur).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }
    Run {
        ok: closed.ok,
        errors: closed.errors,
        rate: closed.rate,
        p50_ms: q_us(&closed.hist, 0.5) / 1e3,
        p99_ms: q_us(&closed.hist, 0.99) / 1e3,
        max_open: max_open.load(Ordering::Relaxed),
    }
}
