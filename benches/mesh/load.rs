//! Load generators: closed-loop workers with a histogram, and an open-loop sender
//! that logs every answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic_discovery::BoxError;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use crate::stats;

type Req = http::Request<tonic::body::Body>;
type Resp = http::Response<tonic::body::Body>;

/// Every contender behind one type. The box costs every contender the same one
/// allocation per call.
pub type Chan = BoxCloneSyncService<Req, Resp, ChanError>;

/// A contender's error as a concrete type (a boxed `dyn Error` as the service error
/// trips the compiler's higher-ranked `Send` check inside `spawn`).
#[derive(Debug)]
pub struct ChanError(BoxError);

impl std::fmt::Display for ChanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ChanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Boxes a channel into a [`Chan`].
pub fn boxed<S>(service: S) -> Chan
where
    S: tower::Service<Req, Response = Resp> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(
        ServiceBuilder::new().service(service.map_err(|e: S::Error| ChanError(e.into()))),
    )
}

/// One unary Echo with a 64-byte payload: the answering instance, or the code.
pub async fn echo(client: &mut EchoClient<Chan>) -> Result<String, tonic::Code> {
    let req = EchoRequest {
        message: vec![7; 64],
    };
    match client.echo(req).await {
        Ok(reply) => Ok(reply.into_inner().instance_id),
        Err(status) => Err(status.code()),
    }
}

/// What a closed-loop run measured.
#[derive(Debug)]
pub struct Closed {
    pub hist: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub rate: f64,
    /// The client's CPU time per answered call over the measured run, µs (NaN when
    /// unknown).
    pub cpu_us_per_call: f64,
    pub per_instance: HashMap<String, u64>,
}

/// `workers` tasks calling back to back for `warmup` (not recorded) then `run`.
pub async fn closed_loop(chan: &Chan, workers: usize, warmup: Duration, run: Duration) -> Closed {
    let start = Instant::now() + warmup;
    let end = start + run;
    // The client's CPU time over the measured run, read at its start and end.
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(start).await;
        let before = stats::client_cpu();
        tokio::time::sleep_until(end).await;
        before
            .zip(stats::client_cpu())
            .map(|(a, b)| b.saturating_sub(a))
    });
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let mut client = EchoClient::new(chan.clone());
        tasks.spawn(async move {
            let mut out = Closed {
                hist: stats::hist(),
                ok: 0,
                errors: 0,
                rate: 0.0,
                cpu_us_per_call: f64::NAN,
                per_instance: HashMap::new(),
            };
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let result = echo(&mut client).await;
                if sent < start {
                    continue;
                }
                match result {
                    Ok(id) => {
                        stats::record(&mut out.hist, sent.elapsed());
                        out.ok += 1;
                        *out.per_instance.entry(id).or_default() += 1;
                    }
                    Err(_) => out.errors += 1,
                }
            }
            out
        });
    }
    let mut total = Closed {
        hist: stats::hist(),
        ok: 0,
        errors: 0,
        rate: 0.0,
        cpu_us_per_call: f64::NAN,
        per_instance: HashMap::new(),
    };
    while let Some(Ok(part)) = tasks.join_next().await {
        let _ = total.hist.add(&part.hist);
        total.ok += part.ok;
        total.errors += part.errors;
        for (id, n) in part.per_instance {
            *total.per_instance.entry(id).or_default() += n;
        }
    }
    total.rate = total.ok as f64 / run.as_secs_f64();
    if let Ok(Some(cpu)) = cpu.await
        && total.ok > 0
    {
        total.cpu_us_per_call = cpu.as_secs_f64() * 1e6 / total.ok as f64;
    }
    total
}

/// One answer of the open-loop load.
#[derive(Debug, Clone)]
pub struct Event {
    pub sent: Instant,
    pub done: Instant,
    pub outcome: Result<String, tonic::Code>,
}

impl Event {
    pub fn latency(&self) -> Duration {
        self.done - self.sent
    }
}

/// Open-loop load: one call every `1/rate` s, each on its own task so a slow answer
/// never delays the next send; every answer is logged.
#[derive(Debug)]
pub struct OpenLoad {
    pub started: Instant,
    log: Arc<Mutex<Vec<Event>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl OpenLoad {
    /// Starts sending `rate` calls per second on `chan`, each bounded by `timeout`.
    pub fn start(chan: Chan, rate: u32, timeout: Duration) -> OpenLoad {
        let log: Arc<Mutex<Vec<Event>>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let log2 = log.clone();
        let task = tokio::spawn(async move {
            let mut calls = JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                while calls.try_join_next().is_some() {}
                let (mut client, log) = (EchoClient::new(chan.clone()), log2.clone());
                calls.spawn(async move {
                    let sent = Instant::now();
                    let outcome = tokio::time::timeout(timeout, echo(&mut client))
                        .await
                        .unwrap_or(Err(tonic::Code::DeadlineExceeded));
                    let event = Event {
                        sent,
                        done: Instant::now(),
                        outcome,
                    };
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(event);
                });
            }
            while calls.join_next().await.is_some() {}
        });
        OpenLoad {
            started: Instant::now(),
            log,
            stop,
            task,
        }
    }

    /// Stops sending, waits for the calls in flight, returns every answer by send time.
    pub async fn finish(self) -> Vec<Event> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let mut log = std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()));
        log.sort_by_key(|e| e.sent);
        log
    }
}
