//! Scenario 14, fleet: 1,000 real endpoints (tonic Echo servers on loopback, spread
//! over four server runtimes), an open-loop load, and 2% of them black-holed
//! (`UNAVAILABLE` at once) for 10 s, then restored: how many calls fail, how soon each
//! ejected endpoint gets its probe once its ejection runs out, and how soon each
//! restored one is back in service. tonic's balancer over the same endpoints beside it,
//! and ours again with a retry policy (gRFC A6: 3 attempts on `UNAVAILABLE`).

use std::collections::HashMap;
use std::fmt::Write;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::server::Connected;
use tonic_discovery::InstanceKey;
use tonic_discovery::balance::{
    BalancedChannel, EndpointState, MethodConfig, MethodName, RetryPolicy, ServiceConfig,
};
use tonic_discovery::source::StaticList;
use tonic_discovery_testkit::EchoService;
use tonic_discovery_testkit::pb::echo_server::EchoServer;

use crate::common::{Config, Res, Section, wait_for};
use crate::load::{Chan, Event, OpenLoad, boxed};
use crate::overhead::verdict;

/// Targets of the issue: failed calls in the 10 s after the fault, %; probe delay past
/// the ejection's end, ms; restored endpoint back in service, ms.
const MAX_FAILED_PCT: f64 = 0.5;
const MAX_PROBE_DELAY_MS: f64 = 50.0;
const MAX_BACK_MS: f64 = 2000.0;

/// Endpoints served by a few runtimes, each on a thread of its own.
pub struct Fleet {
    pub services: Vec<EchoService>,
    pub addrs: Vec<SocketAddr>,
    /// Each member's front door: connections counted, refused or ended.
    pub doors: Vec<Arc<Door>>,
    stops: Vec<oneshot::Sender<()>>,
}

/// A member's front door. Every connection it accepts is counted; while refusing it
/// closes them at once (a process that crashes as it starts, or a port nobody
/// serves), and [`kill`](Self::kill) ends the open ones too, as a crash would.
pub struct Door {
    refusing: AtomicBool,
    accepted: AtomicU64,
    /// Bumped by `kill`: every connection open then ends.
    killed: watch::Sender<u64>,
}

impl Door {
    fn new() -> Door {
        Door {
            refusing: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            killed: watch::Sender::new(0),
        }
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Closes every new connection at once (`false`: serves them again).
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::Release);
    }

    /// Refuses new connections and ends the open ones.
    pub fn kill(&self) {
        self.refuse(true);
        self.killed.send_modify(|n| *n += 1);
    }

    /// The connections `listener` accepts, through this door.
    fn incoming(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> impl futures_util::Stream<Item = std::io::Result<Gated>> {
        futures_util::stream::unfold((listener, self), |(listener, door)| async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    Err(e) => return Some((Err(e), (listener, door))),
                };
                door.accepted.fetch_add(1, Ordering::Relaxed);
                if door.refusing.load(Ordering::Acquire) {
                    drop(tcp);
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                let mut killed = door.killed.subscribe();
                let gated = Gated {
                    tcp,
                    killed: Some(Box::pin(async move {
                        let _ = killed.changed().await;
                    })),
                };
                return Some((Ok(gated), (listener, door)));
            }
        })
    }
}

/// A served connection that fails its reads and writes once its door is killed.
pub struct Gated {
    tcp: tokio::net::TcpStream,
    /// Ready once killed; `None` after.
    killed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Gated {
    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        match &mut self.killed {
            None => Err(std::io::ErrorKind::ConnectionReset.into()),
            Some(killed) => {
                if killed.as_mut().poll(cx).is_ready() {
                    self.killed = None;
                    return Err(std::io::ErrorKind::ConnectionReset.into());
                }
                Ok(())
            }
        }
    }
}

impl tokio::io::AsyncRead for Gated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Gated {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Connected for Gated {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl Fleet {
    pub fn start(prefix: &str, n: usize, threads: usize) -> Res<Fleet> {
        let mut services = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        let mut doors = Vec::with_capacity(n);
        type Member = (std::net::TcpListener, EchoService, Arc<Door>);
        let mut per_thread: Vec<Vec<Member>> = (0..threads).map(|_| Vec::new()).collect();
        for i in 0..n {
            let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            listener.set_nonblocking(true)?;
            addrs.push(listener.local_addr()?);
            let service = EchoService::new(format!("{prefix}{i}"));
            services.push(service.clone());
            let door = Arc::new(Door::new());
            doors.push(door.clone());
            per_thread[i % threads].push((listener, service, door));
        }
        let mut stops = Vec::new();
        for (t, servers) in per_thread.into_iter().enumerate() {
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("fleet-{t}"))
                .spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        for (listener, service, door) in servers {
                            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                                continue;
                            };
                            let incoming = door.incoming(listener);
                            tokio::spawn(
                                tonic::transport::Server::builder()
                                    .add_service(EchoServer::new(service))
                                    .serve_with_incoming(incoming),
                            );
                        }
                        let _ = stopped.await;
                    });
                    rt.shutdown_background();
                })?;
        }
        Ok(Fleet {
            services,
            addrs,
            doors,
            stops,
        })
    }

    /// Ours over a `StaticList` of the fleet (kept by the caller while the channel
    /// runs), with `config`'s call policies.
    fn ours(&self, config: ServiceConfig) -> Res<(StaticList, BalancedChannel)> {
        let list = StaticList::from_addrs(self.addrs.iter().map(ToString::to_string))?;
        let channel = BalancedChannel::builder("fleet")
            .metrics_endpoints(0)
            .service_config(config)
            .build(list.discovery("fleet"))?;
        Ok((list, channel))
    }

    fn tonic(&self) -> Res<Chan> {
        let endpoints = self
            .addrs
            .iter()
            .map(|a| tonic::transport::Endpoint::from_shared(format!("http://{a}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(boxed(tonic::transport::Channel::balance_list(
            endpoints.into_iter(),
        )))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// What one contender's run measured.
#[derive(Debug, Default)]
struct Run {
    requests: usize,
    /// Calls sent in the window after the fault, and of them failed.
    window: usize,
    window_failed: usize,
    failed_after_window: usize,
    /// Per ejection that ran out: ms from its end to the endpoint leaving `Ejected`.
    probe_delays: Vec<f64>,
    ejections: usize,
    /// Ejections that ran out and got no probe before the restore.
    unprobed: usize,
    /// Per restored endpoint: ms from the restore to its first answered call.
    back_ms: Vec<f64>,
    not_back: usize,
    /// Calls the black-holed servers received in the window (each one failed): in
    /// all, and before each endpoint's first ejection (those of the endpoints the
    /// channel ejected), and how many were never ejected.
    holed_calls: u64,
    calls_to_eject: Vec<u64>,
    never_ejected: usize,
}

pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let n = cfg.pick(1000, 200);
    let holed = n / 50;
    let rate = cfg.pick(1000, 500);
    let window = Duration::from_millis(cfg.pick(10_000, 4000));
    let after = Duration::from_millis(cfg.pick(5000, 3000));
    eprintln!("  {n} endpoints, {holed} black-holed, {rate} calls/s");

    let fleet = Fleet::start("fleet-", n, 4)?;
    let mut ours_runs = Vec::new();
    for config in [ServiceConfig::new(), retrying()] {
        let (_list, ours) = fleet.ours(config)?;
        wait_for(Duration::from_secs(60), "every endpoint ready", || async {
            ours.endpoints()
                .iter()
                .filter(|e| e.state() == EndpointState::Ready)
                .count()
                == n
        })
        .await?;
        let run = measure(
            &fleet,
            boxed(ours.clone()),
            Some(&ours),
            holed,
            rate,
            window,
            after,
        )
        .await?;
        ours_runs.push(run);
    }
    let retry_run = ours_runs.pop().ok_or("no retrying run")?;
    let ours_run = ours_runs.pop().ok_or("no default run")?;
    let tonic = fleet.tonic()?;
    let tonic_run = measure(&fleet, tonic, None, holed, rate, window, after).await?;

    let mut md = format!(
        "{n} endpoints (tonic Echo servers on loopback, {} per server runtime, four runtimes on \
         threads of their own), open loop {rate} calls/s (2 s deadline per call). After a 3 s \
         warm-up, {holed} of them (2%) answer every call at once with `UNAVAILABLE` for {:.0} s, \
         then answer normally again; the load goes on {:.0} s after. ours = `BalancedChannel` \
         over the same {n} instances (defaults), ours + retries = the same with a retry \
         policy for every method (gRFC A6: 3 attempts on `UNAVAILABLE`, backoff 10–100 ms), \
         tonic-balance = `Channel::balance_list`. Probe \
         delay: for each ejection of a black-holed endpoint that ran out, the time from its end \
         to the first call its server received after it (the channel's state and the servers' \
         counts read every 2 ms; an ejection whose probe had not come by the restore counts \
         with its delay until then). Back \
         in service: restore → the endpoint's first answered call.\n\n",
        n / 4,
        window.as_secs_f64(),
        after.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| contender | requests | failed in the {:.0} s after the fault | failed after | ejections that ran out (no probe before the restore) | probe delay p50 / p99 / max ms | back in service p50 / max ms | not back |\n|---|---|---|---|---|---|---|---|",
        window.as_secs_f64()
    );
    for (name, r) in [
        ("tonic-balance", &tonic_run),
        ("ours", &ours_run),
        ("ours + retries", &retry_run),
    ] {
        let pct = 100.0 * r.window_failed as f64 / r.window.max(1) as f64;
        let probes = if r.probe_delays.is_empty() {
            "–".to_owned()
        } else {
            format!(
                "{:.0} / {:.0} / {:.0}",
                quantile(&r.probe_delays, 0.5),
                quantile(&r.probe_delays, 0.99),
                quantile(&r.probe_delays, 1.0)
            )
        };
        let back = if r.back_ms.is_empty() {
            "–".to_owned()
        } else {
            format!(
                "{:.0} / {:.0}",
                quantile(&r.back_ms, 0.5),
                quantile(&r.back_ms, 1.0)
            )
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {} of {} ({pct:.2}%) | {} | {} ({}) | {probes} | {back} | {} |",
            r.requests,
            r.window_failed,
            r.window,
            r.failed_after_window,
            r.ejections,
            r.unprobed,
            r.not_back
        );
    }
    let pct = 100.0 * ours_run.window_failed as f64 / ours_run.window.max(1) as f64;
    let retry_pct = 100.0 * retry_run.window_failed as f64 / retry_run.window.max(1) as f64;
    let probe_max = quantile(&ours_run.probe_delays, 1.0);
    let back_max = quantile(&ours_run.back_ms, 1.0);
    let _ = writeln!(
        md,
        "\nTargets, ours: failed calls ≤ {MAX_FAILED_PCT}% of those sent in the {:.0} s after \
         the fault — {pct:.2}% ({}); every ejected endpoint probed within its backoff + \
         {MAX_PROBE_DELAY_MS:.0} ms — max {probe_max:.0} ms past the ejection's end ({}); every \
         restored endpoint back in service within {:.0} s — max {back_max:.0} ms, {} not back ({}). \
         With a retry policy, failed calls — {retry_pct:.2}% ({}).",
        window.as_secs_f64(),
        verdict(pct <= MAX_FAILED_PCT),
        verdict(!ours_run.probe_delays.is_empty() && probe_max <= MAX_PROBE_DELAY_MS),
        MAX_BACK_MS / 1000.0,
        ours_run.not_back,
        verdict(ours_run.not_back == 0 && back_max <= MAX_BACK_MS),
        verdict(retry_pct <= MAX_FAILED_PCT),
    );
    // Where the failures come from: the calls before each black-holed endpoint's first
    // ejection (the consecutive-failure detector's run) and those after it (probes).
    let to_eject: u64 = ours_run.calls_to_eject.iter().sum();
    let ejected = ours_run.calls_to_eject.len();
    let _ = writeln!(
        md,
        "\nWhere ours' failures come from: its {holed} black-holed servers received {} calls in \
         the window; {to_eject} of them before the channel first ejected the endpoint ({:.1} per \
         endpoint, {ejected} ejected, {} never), {} after (probes, and calls sent before an \
         ejection and answered after it).",
        ours_run.holed_calls,
        to_eject as f64 / ejected.max(1) as f64,
        ours_run.never_ejected,
        ours_run.holed_calls.saturating_sub(to_eject),
    );
    let json = json!({
        "endpoints": n,
        "black_holed": holed,
        "rate": rate,
        "window_s": window.as_secs_f64(),
        "target_failed_pct": MAX_FAILED_PCT,
        "target_probe_delay_ms": MAX_PROBE_DELAY_MS,
        "target_back_ms": MAX_BACK_MS,
        "ours": to_json(&ours_run),
        "ours_retrying": to_json(&retry_run),
        "tonic_balance": to_json(&tonic_run),
    });
    Ok(Section {
        key: "14-fleet",
        json,
        markdown: md,
    })
}

/// Every method retried on `UNAVAILABLE`, three attempts in all (also scenario 7's
/// third contender).
pub fn retrying() -> ServiceConfig {
    let policy = RetryPolicy::new(3, [Code::Unavailable]).backoff(
        Duration::from_millis(10),
        Duration::from_millis(100),
        2.0,
    );
    ServiceConfig::new().method(MethodConfig::new([MethodName::all()]).retry(policy))
}

fn to_json(r: &Run) -> serde_json::Value {
    json!({
        "requests": r.requests,
        "window": r.window,
        "window_failed": r.window_failed,
        "failed_after_window": r.failed_after_window,
        "ejections": r.ejections,
        "unprobed": r.unprobed,
        "probe_delays_ms": r.probe_delays,
        "back_ms": r.back_ms,
        "not_back": r.not_back,
        "holed_calls": r.holed_calls,
        "calls_to_first_ejection": r.calls_to_eject,
        "never_ejected": r.never_ejected,
    })
}

async fn measure(
    fleet: &Fleet,
    chan: Chan,
    ours: Option<&BalancedChannel>,
    holed: usize,
    rate: u32,
    window: Duration,
    after: Duration,
) -> Res<Run> {
    for s in &fleet.services {
        s.fail_with(None);
    }
    let load = OpenLoad::start(chan, rate, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The black-holed: spread over the fleet.
    let step = fleet.services.len() / holed.max(1);
    let holes: Vec<usize> = (0..holed).map(|i| i * step).collect();
    // The channel's keys: a `StaticList` keys an instance by its address.
    // Each maps to its position in `holes` and its index in the fleet.
    let ids: HashMap<InstanceKey, (usize, usize)> = holes
        .iter()
        .enumerate()
        .map(|(k, &i)| (StaticList::key(&fleet.addrs[i].to_string()), (k, i)))
        .collect();
    let fault = Instant::now();
    let received_at_fault: Vec<u64> = holes
        .iter()
        .map(|&i| fleet.services[i].received())
        .collect();
    // Per black-holed endpoint: the calls its server received from the fault to the
    // channel's first ejection of it.
    let mut to_eject: HashMap<usize, u64> = HashMap::new();
    for &i in &holes {
        fleet.services[i].fail_with(Some(Code::Unavailable));
    }
    // Watch the black-holed endpoints: the channel's ejections, and the calls that
    // reach each server (none while it is ejected: the first after the ejection's end
    // is its probe).
    let mut probe_delays = Vec::new();
    let mut ejections = 0;
    let mut unprobed = 0;
    // Per black-holed endpoint: the end of its current ejection and the calls its
    // server had received while it was ejected.
    let mut watch: HashMap<usize, (Instant, u64)> = HashMap::new();
    let restore_at = fault + window;
    while Instant::now() < restore_at {
        if let Some(ours) = ours {
            let now = Instant::now();
            for e in ours.endpoints() {
                let Some(&(k, i)) = ids.get(e.key()) else {
                    continue;
                };
                let received = fleet.services[i].received();
                if let (EndpointState::Ejected, Some(end)) = (e.state(), e.ejected_until())
                    && now < end
                {
                    to_eject
                        .entry(i)
                        .or_insert_with(|| received - received_at_fault[k]);
                    watch.insert(i, (end, received));
                    continue;
                }
                if let Some(&(end, before)) = watch.get(&i)
                    && now >= end
                    && received > before
                {
                    watch.remove(&i);
                    ejections += 1;
                    probe_delays.push((now - end).as_secs_f64() * 1000.0);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Ejections that ran out and got no probe before the restore: their delay is at
    // least until the restore.
    for (end, _) in watch.values() {
        if *end < restore_at {
            ejections += 1;
            unprobed += 1;
            probe_delays.push((restore_at - *end).as_secs_f64() * 1000.0);
        }
    }
    let holed_calls = holes
        .iter()
        .zip(&received_at_fault)
        .map(|(&i, at_fault)| fleet.services[i].received() - at_fault)
        .sum();
    let served_before: Vec<u64> = holes.iter().map(|&i| fleet.services[i].served()).collect();
    let restored = Instant::now();
    for &i in &holes {
        fleet.services[i].fail_with(None);
    }
    let mut back_ms = vec![None; holes.len()];
    let end = restored + after;
    while Instant::now() < end {
        let now = Instant::now();
        for (k, &i) in holes.iter().enumerate() {
            if back_ms[k].is_none() && fleet.services[i].served() > served_before[k] {
                back_ms[k] = Some((now - restored).as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events: Vec<Event> = load.finish().await;
    let mut run = Run {
        requests: events.len(),
        probe_delays,
        ejections,
        unprobed,
        holed_calls,
        never_ejected: holes.len() - to_eject.len(),
        calls_to_eject: to_eject.into_values().collect(),
        ..Run::default()
    };
    for e in &events {
        let failed = e.outcome.is_err();
        if e.sent >= fault && e.sent < restore_at {
            run.window += 1;
            run.window_failed += usize::from(failed);
        } else if e.sent >= restore_at && failed {
            run.failed_after_window += 1;
        }
    }
    run.not_back = back_ms.iter().filter(|b| b.is_none()).count();
    run.back_ms = back_ms.into_iter().flatten().collect();
    Ok(run)
}
