//! The worker and the callers' fast path together, at fleet size: endpoints connect
//! over in-memory HTTP/2 connections to in-process servers, under a paused clock.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::DuplexStream;
use tokio_util::sync::PollSender;
use tower::{Service, ServiceExt};

use super::*;
use crate::Locality;
use crate::balance::TrafficPolicy;
use crate::balance::accrual::Verdict;
use crate::balance::buffer::ReplayBuffer;
use crate::balance::channel::BalancedChannel;
use crate::balance::endpoint::ConnectFuture;
use crate::balance::policies::{Live, Policies};
use crate::balance::policy::Policy;
use crate::balance::retry::RetryBudget;
use crate::balance::service_config::ServiceConfig;
use crate::balance::shared::Shared;

/// The stream limit the in-process servers announce.
const MAX_STREAMS: u32 = 100;

type Changes = mpsc::UnboundedSender<Result<Change<InstanceKey, Instance>, BoxError>>;

/// How an in-process server answers a stream.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// At once, trailers-only, with this `grpc-status`.
    Status(&'static str),
    /// At once, trailers-only, with this `grpc-status` and `grpc-retry-pushback-ms`.
    PushBack(&'static str, &'static str),
    /// Response headers, then a body that stays open (held in [`Servers::held`]).
    Stream,
    /// `REFUSED_STREAM` after this long.
    Refuse(Duration),
}

/// What the in-process servers answer, by address (`grpc-status` 0 unless set); the
/// addresses that refuse connections; the connects each address saw; the streams
/// each saw, with their `grpc-timeout`; the response bodies held open.
#[derive(Default)]
struct Servers {
    answers: Mutex<HashMap<String, Answer>>,
    refused: Mutex<HashSet<String>>,
    /// Addresses that close each connection right after its handshake.
    closing: Mutex<HashSet<String>>,
    connects: Mutex<HashMap<String, usize>>,
    streams: Mutex<Vec<(String, Option<String>)>>,
    held: Mutex<Vec<h2::SendStream<Bytes>>>,
}

impl Servers {
    fn answer(&self, addr: &str) -> Answer {
        let answers = self.answers.lock().unwrap();
        answers.get(addr).copied().unwrap_or(Answer::Status("0"))
    }

    fn set(&self, addr: &str, status: &'static str) {
        self.answer_with(addr, Answer::Status(status));
    }

    fn answer_with(&self, addr: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(addr.to_owned(), answer);
    }

    /// The streams `addr` saw, with their `grpc-timeout`.
    fn streams(&self, addr: &str) -> Vec<Option<String>> {
        let streams = self.streams.lock().unwrap();
        streams
            .iter()
            .filter(|(a, _)| a == addr)
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn refuse(&self, addr: &str) {
        self.refused.lock().unwrap().insert(addr.to_owned());
    }

    /// Accepts connections at `addr` and closes each right after its handshake, as a
    /// process crashing as it starts.
    fn close_after_handshake(&self, addr: &str) {
        self.closing.lock().unwrap().insert(addr.to_owned());
    }

    fn closes(&self, addr: &str) -> bool {
        self.closing.lock().unwrap().contains(addr)
    }

    fn connects(&self, addr: &str) -> usize {
        self.connects
            .lock()
            .unwrap()
            .get(addr)
            .copied()
            .unwrap_or(0)
    }

    /// Counts a connect to `addr`; whether it is refused.
    fn connect(&self, addr: &str) -> bool {
        *self
            .connects
            .lock()
            .unwrap()
            .entry(addr.to_owned())
            .or_default() += 1;
        self.refused.lock().unwrap().contains(addr)
    }
}

/// One in-process server: answers each stream as `servers` says for its address.
async fn serve(io: DuplexStream, addr: String, servers: Arc<Servers>) {
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .handshake::<_, Bytes>(io);
    let Ok(mut conn) = handshake.await else {
        return;
    };
    if servers.closes(&addr) {
        return;
    }
    while let Some(Ok((request, respond))) = conn.accept().await {
        let timeout = request.headers().get("grpc-timeout");
        let timeout = timeout.and_then(|t| t.to_str().ok()).map(str::to_owned);
        servers
            .streams
            .lock()
            .unwrap()
            .push((addr.clone(), timeout));
        tokio::spawn(answer(respond, servers.answer(&addr), servers.clone()));
    }
}

async fn answer(
    mut respond: h2::server::SendResponse<Bytes>,
    answer: Answer,
    servers: Arc<Servers>,
) {
    let response = http::Response::builder().header("content-type", "application/grpc");
    match answer {
        Answer::Status(status) => {
            let response = response.header("grpc-status", status).body(());
            let _ = respond.send_response(response.expect("a valid response"), true);
        }
        Answer::PushBack(status, ms) => {
            let response = response.header("grpc-status", status);
            let response = response.header("grpc-retry-pushback-ms", ms).body(());
            let _ = respond.send_response(response.expect("a valid response"), true);
        }
        Answer::Stream => {
            let response = response.body(()).expect("a valid response");
            if let Ok(body) = respond.send_response(response, false) {
                servers.held.lock().unwrap().push(body);
            }
        }
        Answer::Refuse(after) => {
            tokio::time::sleep(after).await;
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        }
    }
}

/// Connects to the in-process servers; a connection's end is reported on `closed`,
/// as `connect` does for real ones.
fn connector(servers: Arc<Servers>, closed: mpsc::UnboundedSender<InstanceKey>) -> MockConnect {
    Arc::new(move |stats: &Arc<EndpointStats>| -> ConnectFuture {
        let (stats, servers, closed) = (stats.clone(), servers.clone(), closed.clone());
        Box::pin(async move {
            // A connect takes a millisecond, as on a local network.
            tokio::time::sleep(Duration::from_millis(1)).await;
            if servers.connect(&stats.address) {
                return Err("connection refused".into());
            }
            let (client, server) = tokio::io::duplex(16 * 1024);
            tokio::spawn(serve(server, stats.address.clone(), servers));
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(client))
                .await?;
            let ended = stats.clone();
            tokio::spawn(async move {
                let _ = conn.await;
                ended.waker.wake();
                let _ = closed.send(ended.key.clone());
            });
            stats.set_max_streams(MAX_STREAMS);
            Ok(send)
        })
    })
}

struct Fleet {
    channel: BalancedChannel,
    registry: Registry,
    changes: Changes,
    servers: Arc<Servers>,
}

impl Fleet {
    /// A channel over `n` instances, its worker spawned.
    fn new(n: usize, accrual: FailureAccrual) -> Fleet {
        Fleet::with(n, accrual, None, |_| {})
    }

    /// As [`new`](Self::new), under subsetting, with `servers` set up by `setup`
    /// before the first instance is discovered.
    fn with(
        n: usize,
        accrual: FailureAccrual,
        subset: Option<Subset>,
        setup: impl FnOnce(&Servers),
    ) -> Fleet {
        let config = EndpointConfig::default();
        Fleet::build(n, accrual, subset, config, 0, setup)
    }

    /// As [`new`](Self::new), with these endpoint settings and resends at most.
    fn configured(n: usize, config: EndpointConfig, max_resends: u32) -> Fleet {
        let accrual = FailureAccrual::default();
        Fleet::build(n, accrual, None, config, max_resends, |_| {})
    }

    fn build(
        n: usize,
        accrual: FailureAccrual,
        subset: Option<Subset>,
        config: EndpointConfig,
        max_resends: u32,
        setup: impl FnOnce(&Servers),
    ) -> Fleet {
        let policies = ServiceConfig::new();
        let registry = Registry::default();
        Fleet::build_with(
            n,
            accrual,
            subset,
            config,
            max_resends,
            setup,
            &policies,
            registry,
        )
    }

    /// A channel over `n` instances whose calls follow `policies`, failure accrual
    /// off (so a failing instance keeps its calls).
    fn following(n: usize, policies: &ServiceConfig, setup: impl FnOnce(&Servers)) -> Fleet {
        let (accrual, config) = (FailureAccrual::disabled(), EndpointConfig::default());
        let registry = Registry::default();
        Fleet::build_with(n, accrual, None, config, 0, setup, policies, registry)
    }

    // A test constructor: every variant above passes its own mix of these.
    #[allow(clippy::too_many_arguments)]
    fn build_with(
        n: usize,
        accrual: FailureAccrual,
        subset: Option<Subset>,
        config: EndpointConfig,
        max_resends: u32,
        setup: impl FnOnce(&Servers),
        policies: &ServiceConfig,
        registry: Registry,
    ) -> Fleet {
        let (changes, mut rx) = mpsc::unbounded_channel();
        let discovery = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let (tx, requests) = mpsc::channel(1024);
        let (resend, resends) = mpsc::unbounded_channel();
        let name: Arc<str> = "fleet".into();
        let parts = WorkerParts {
            name: name.clone(),
            requests,
            resends,
            failfast: FailFast::new(Duration::from_secs(3)),
            registry: registry.clone(),
            config: Arc::new(config),
            accrual: Arc::new(accrual),
            load: LoadMetric::default(),
            metrics: ChannelMetrics::new(name.clone(), 0, false),
            subset,
        };
        let servers = Arc::new(Servers::default());
        setup(&servers);
        let mut worker = Worker::new(discovery, parts);
        worker.mock_connect = Some(connector(servers.clone(), worker.closed_tx.clone()));
        tokio::spawn(run(worker));
        let shared = Arc::new(Shared {
            name,
            registry: registry.clone(),
            timeout: None,
            resend,
            budget: RetryBudget::default().build(),
            max_resends,
            policies: Policies::Fixed(Live::new(policies, None)),
            buffer: ReplayBuffer::new(1 << 18, 1 << 24),
            metrics: ChannelMetrics::new("fleet".into(), 0, false),
        });
        let fleet = Fleet {
            channel: BalancedChannel::new(PollSender::new(tx), shared),
            registry,
            changes,
            servers,
        };
        for i in 0..n {
            fleet.insert(i);
        }
        fleet
    }

    /// A channel told it runs in zone a of region r1, over instances 0 and 1 in zone
    /// a and 2 in zone b, with `servers` set up by `setup` first.
    fn zoned(setup: impl FnOnce(&Servers)) -> Fleet {
        let policy = TrafficPolicy::new().locality(Locality::new("r1", "a"));
        let registry = Registry::new(Policy::from(&policy));
        let config = EndpointConfig::default();
        let (accrual, policies) = (FailureAccrual::default(), ServiceConfig::new());
        let fleet = Fleet::build_with(0, accrual, None, config, 0, setup, &policies, registry);
        for (i, zone) in [(0, "a"), (1, "a"), (2, "b")] {
            let instance = Fleet::instance(i).with_locality(Locality::new("r1", zone));
            let _ = fleet
                .changes
                .send(Ok(Change::Insert(Fleet::key(i), instance)));
        }
        fleet
    }

    fn key(i: usize) -> InstanceKey {
        InstanceKey::new("node", format!("i{i}"))
    }

    fn instance(i: usize) -> Instance {
        Instance::new(Self::key(i), format!("10.0.{}.{}", i / 250, i % 250), 80)
    }

    fn insert(&self, i: usize) {
        let instance = Self::instance(i);
        let _ = self
            .changes
            .send(Ok(Change::Insert(Self::key(i), instance)));
    }

    fn stats(&self, i: usize) -> Arc<EndpointStats> {
        self.registry
            .stats(&Self::key(i))
            .expect("a known endpoint")
    }

    /// One call through the channel; its `grpc-status`.
    async fn call(&mut self) -> String {
        status(self.send().await.await)
    }

    /// Starts a call through the channel.
    async fn send(&mut self) -> crate::balance::ResponseFuture {
        let request = http::Request::new(tonic::body::Body::empty());
        let channel = self.channel.ready().await.expect("channel ready");
        channel.call(request)
    }
}

/// A response's `grpc-status`.
fn status(response: Result<http::Response<tonic::body::Body>, BoxError>) -> String {
    let response = response.expect("a response");
    let status = response.headers().get("grpc-status").expect("a status");
    status.to_str().expect("ascii").to_owned()
}

/// Waits (in paused time, a millisecond a step) until `cond` holds, at most `limit`.
async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What we want to test: an endpoint whose ejection ran out gets its probe with the
/// next call, whatever the fleet size. Before, the caller's draw and the worker's
/// both had to land on it: about 4 calls in N², one probe in 250,000 calls at
/// N = 1,000.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_probe_due_takes_the_next_call_in_a_fleet_of_a_thousand() {
    const N: usize = 1_000;
    let mut fleet = Fleet::new(N, FailureAccrual::default());
    ready(&fleet, N).await;
    let bad = fleet.stats(7);
    fleet.servers.set(&bad.address, "14");
    // Five failures in a row eject it.
    for _ in 0..5 {
        bad.record(Verdict::Failure, Duration::from_millis(1), false);
    }
    until(Duration::from_secs(1), "ejected", || {
        bad.mode() == Mode::Ejected
    })
    .await;
    // It recovers; its ejection (1 s at most) runs out.
    fleet.servers.set(&bad.address, "0");
    until(Duration::from_secs(2), "a probe is due", || {
        bad.mode() == Mode::ProbeAllowed
    })
    .await;
    assert_eq!(fleet.call().await, "0");
    assert_eq!(bad.mode(), Mode::In, "the probe went with the next call");
}

async fn ready(fleet: &Fleet, n: usize) {
    until(Duration::from_secs(10), "the fleet is ready", || {
        let endpoints = fleet.registry.snapshot();
        endpoints.len() == n && endpoints.iter().all(|e| e.state() == EndpointState::Ready)
    })
    .await;
}

/// What we want to test: callers that find the last stream slot free at the same
/// moment take it once; the others are turned away (to the worker), instead of all
/// passing the check and queueing above the limit inside hyper. A slot reserved and
/// not sent on is given back.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn callers_at_the_stream_limit_take_the_last_slot_once() {
    let fleet = Fleet::new(1, FailureAccrual::default());
    ready(&fleet, 1).await;
    let stats = fleet.stats(0);
    stats.set_max_streams(1);
    // Two callers draw before either has sent.
    let first = fleet.registry.pick_direct();
    let second = fleet.registry.pick_direct();
    assert!(first.is_some(), "the free slot is taken");
    assert!(second.is_none(), "two calls admitted for one stream slot");
    assert_eq!(stats.open_streams(), 1);
    drop(first);
    assert_eq!(
        stats.open_streams(),
        0,
        "an unsent reservation is given back"
    );
}

/// A subset of 3 over 10 instances, and the ring it is drawn from: its home members,
/// and the refills for those that fail.
struct Ring {
    subset: Subset,
    ring: Subset,
    home: Vec<InstanceKey>,
}

impl Ring {
    const N: usize = 10;

    fn new() -> Ring {
        let subset = Subset::new(crate::balance::Coordinate::from_seed(7), 3);
        let mut ring = subset.clone();
        ring.set_members(&(0..Self::N).map(Fleet::key).collect::<Vec<_>>());
        let home = ring.select(|_| false).cloned().collect();
        Ring { subset, ring, home }
    }

    /// The first member outside the home subset that refills it while `out` fail.
    fn refill(&self, out: &[&InstanceKey]) -> InstanceKey {
        self.ring
            .select(|k| out.contains(&k))
            .find(|k| !self.home.contains(k))
            .cloned()
            .expect("a refill")
    }

    /// A channel under this subset, its servers set up by `setup`.
    fn fleet(self, setup: impl FnOnce(&Servers)) -> Fleet {
        Fleet::with(Self::N, FailureAccrual::default(), Some(self.subset), setup)
    }

    /// The in-process server address of a member.
    fn addr(key: &InstanceKey) -> String {
        let i: usize = key.id()[1..].parse().expect("an index");
        Fleet::instance(i).authority()
    }
}

/// What we want to test: a refill that fails too leaves the subset with its failure
/// state and stays out for a backoff that grows, instead of being wanted again at
/// the next wake-up as a new member; and the healthy refill after it stays put. Before, a refused refill and the next member on
/// the ring swapped places at every wake-up: a connect every millisecond.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_refill_stays_out_for_its_backoff() {
    let ring = Ring::new();
    let h = ring.home[0].clone();
    let r1 = ring.refill(&[&h]);
    let r2 = ring.refill(&[&h, &r1]);
    let addr = Ring::addr;
    let fleet = ring.fleet(|servers| {
        servers.refuse(&addr(&h));
        servers.refuse(&addr(&r1));
    });
    until(Duration::from_secs(1), "the second refill joins", || {
        fleet.servers.connects(&addr(&r2)) > 0
    })
    .await;
    // Five seconds of a refused home member and a refused first refill.
    // (Scenario time, not a wait for a condition: the paused clock runs every timer
    // in between at its time.)
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Reconnect backoff 100 ms to 10 s, jitter 0.2: delays of at least 80, 160,
    // 320, 640, 1280 and 2560 ms, so 7 connects at most in 5 s.
    let connects = fleet.servers.connects(&addr(&r1));
    assert!(
        connects <= 7,
        "{connects} connects to a refused refill in 5 s"
    );
    // The second refill carries the traffic throughout: the first returns on trial
    // beside it, so it is not taken out at each return (it was, once per return).
    assert_eq!(
        fleet.servers.connects(&addr(&r2)),
        1,
        "the healthy refill was disconnected and connected again"
    );
}

/// What we want to test: a refill whose server accepts each connection and closes it
/// right after the handshake stays out for a backoff that grows. It is connected for
/// a moment each time it returns; before, that moment forgave its past failures, so
/// every return was its first: 56 connects in 5 s (85 in 8 s in the refills
/// benchmark) where the backoff allows 7.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refill_that_closes_its_connections_is_not_forgiven_for_connecting() {
    let ring = Ring::new();
    let h = ring.home[0].clone();
    let r1 = ring.refill(&[&h]);
    let addr = Ring::addr;
    let fleet = ring.fleet(|servers| {
        servers.refuse(&addr(&h));
        servers.close_after_handshake(&addr(&r1));
    });
    until(Duration::from_secs(1), "the refill is tried", || {
        fleet.servers.connects(&addr(&r1)) > 0
    })
    .await;
    // Scenario time, as above.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let connects = fleet.servers.connects(&addr(&r1));
    assert!(
        connects <= 7,
        "{connects} connects in 5 s to a refill that closes its connections"
    );
}

/// What we want to test: a home member whose server accepts each connection and
/// closes it right after the handshake does not take its place back from its refill
/// at each attempt. Before, the moment it was connected made it a member in good
/// standing: the refill left, and joined again when the connection closed, a
/// reconnect of a healthy instance for every retry of the failing one.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_home_member_that_closes_its_connections_leaves_its_refill_alone() {
    let ring = Ring::new();
    let h = ring.home[0].clone();
    let r1 = ring.refill(&[&h]);
    let addr = Ring::addr;
    let fleet = ring.fleet(|servers| {
        servers.close_after_handshake(&addr(&h));
    });
    until(Duration::from_secs(2), "the refill joins", || {
        fleet.servers.connects(&addr(&r1)) > 0
    })
    .await;
    // Scenario time, as above.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        fleet.servers.connects(&addr(&h)) >= 4,
        "the home member keeps retrying"
    );
    assert_eq!(
        fleet.servers.connects(&addr(&r1)),
        1,
        "the refill was taken out at a retry of the home member"
    );
}

/// What we want to test: a call waiting in the worker's queue is served before a
/// caller that comes later takes the stream freed under it. Before, a caller in a
/// closed loop took it through the fast path while the queued call kept waiting.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_queued_call_is_served_before_a_later_caller_takes_the_freed_stream() {
    let mut fleet = Fleet::new(1, FailureAccrual::default());
    ready(&fleet, 1).await;
    let stats = fleet.stats(0);
    stats.set_max_streams(1);
    let held = fleet.registry.pick_direct().expect("the only stream");
    // Finds the endpoint full: waits in the worker's queue.
    let queued = fleet.send().await;
    drop(held);
    // A caller comes back before the worker has run.
    let later = fleet.send().await;
    assert_eq!(
        stats.open_streams(),
        0,
        "the later caller took the stream freed under the queued call"
    );
    assert_eq!(status(queued.await), "0");
    assert_eq!(status(later.await), "0");
}

/// What we want to test: fail-fast fires only when no endpoint could take a call; a
/// call waiting for a busy endpoint (at its stream limit) longer than the fail-fast
/// timeout is served once a stream frees up. Before, it failed with `Unavailable`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_waits_for_a_busy_endpoint_past_the_failfast_timeout() {
    let mut fleet = Fleet::new(1, FailureAccrual::default());
    ready(&fleet, 1).await;
    fleet.stats(0).set_max_streams(1);
    let held = fleet.registry.pick_direct().expect("the only stream");
    let queued = tokio::spawn(fleet.send().await);
    // Scenario time: past the 3 s fail-fast timeout, every timer run at its time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!queued.is_finished(), "failed while the endpoint was busy");
    drop(held);
    assert_eq!(status(queued.await.expect("no panic")), "0");
}

/// What we want to test: an endpoint whose server says `NOT_SERVING` leaves the
/// table that draws, tier shares and weights come from at once, and returns when it
/// serves again. Before, the table learnt it only when some draw polled it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_health_change_refreshes_the_table_at_once() {
    let fleet = Fleet::new(3, FailureAccrual::default());
    ready(&fleet, 3).await;
    let key = Fleet::key(1);
    assert_eq!(fleet.registry.in_service(&key), Some(true));
    fleet.stats(1).set_serving(false);
    until(Duration::from_secs(1), "out of the table", || {
        fleet.registry.in_service(&key) == Some(false)
    })
    .await;
    fleet.stats(1).set_serving(true);
    until(Duration::from_secs(1), "back in the table", || {
        fleet.registry.in_service(&key) == Some(true)
    })
    .await;
}

fn addr(i: usize) -> String {
    Fleet::instance(i).authority()
}

/// What we want to test: `concurrency_limit` covers a call until its response body
/// ends, so streaming calls count (the builder promises at most `limit` requests in
/// flight). Before, the permit went back at the response headers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_concurrency_limit_covers_a_call_to_the_end_of_its_body() {
    let config = EndpointConfig {
        concurrency_limit: Some(1),
        ..EndpointConfig::default()
    };
    let mut fleet = Fleet::configured(1, config, 0);
    fleet.servers.answer_with(&addr(0), Answer::Stream);
    ready(&fleet, 1).await;
    let streaming = fleet.send().await.await.expect("response headers");
    let second = tokio::spawn(fleet.send().await);
    // Scenario time for the worker to send the second call, if it would.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fleet.servers.streams(&addr(0)).len(),
        1,
        "a second call went while the first one's body was open"
    );
    drop(streaming);
    until(Duration::from_secs(1), "the second call is sent", || {
        fleet.servers.streams(&addr(0)).len() == 2
    })
    .await;
    second.abort();
}

/// What we want to test: a `REFUSED_STREAM` that cannot be sent elsewhere is load
/// shedding, not a failure of the instance: it is not counted towards ejection.
/// Before, it counted as a transport failure, so a server shedding load got itself
/// ejected.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refused_stream_that_cannot_be_resent_does_not_eject() {
    let accrual = FailureAccrual::default().consecutive_failures(1);
    // Without resends, a refused request cannot be sent elsewhere.
    let config = EndpointConfig {
        replay: None,
        ..EndpointConfig::default()
    };
    let mut fleet = Fleet::build(2, accrual, None, config, 0, |servers| {
        servers.answer_with(&addr(0), Answer::Refuse(Duration::ZERO));
    });
    ready(&fleet, 2).await;
    // Until the shedding instance has refused a call (it takes the first call it
    // is drawn for: it was never tried).
    for _ in 0..100 {
        if !fleet.servers.streams(&addr(0)).is_empty() {
            break;
        }
        let _ = fleet.send().await.await;
    }
    assert_eq!(
        fleet.servers.streams(&addr(0)).len(),
        1,
        "a call was refused"
    );
    // Scenario time for the worker to handle a trip, if one were sent.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fleet.stats(0).mode(), Mode::In, "ejected for shedding load");
}

/// What we want to test: a call resent to another instance carries the time that
/// remains in its `grpc-timeout`, so the second server's deadline is not later than
/// the caller's. Before, it kept its original value.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_resent_call_carries_the_time_that_remains() {
    let config = EndpointConfig::default();
    let mut fleet = Fleet::configured(2, config, 1);
    // The first instance refuses every stream after 300 ms.
    fleet
        .servers
        .answer_with(&addr(0), Answer::Refuse(Duration::from_millis(300)));
    ready(&fleet, 2).await;
    for _ in 0..100 {
        if !fleet.servers.streams(&addr(0)).is_empty() {
            break;
        }
        let mut request = http::Request::new(tonic::body::Body::empty());
        let timeout = http::HeaderValue::from_static("1S");
        request.headers_mut().insert("grpc-timeout", timeout);
        let channel = fleet.channel.ready().await.expect("channel ready");
        assert_eq!(
            status(channel.call(request).await),
            "0",
            "resent and served"
        );
    }
    let first = fleet.servers.streams(&addr(0));
    assert_eq!(first, [Some("1S".to_owned())]);
    let resent = fleet.servers.streams(&addr(1));
    let last = resent.last().cloned().flatten().expect("a grpc-timeout");
    let left = crate::balance::shared::parse_grpc_timeout(&last).expect("valid");
    assert!(
        left <= Duration::from_millis(700),
        "resent with {last} after 300 ms of a 1 s timeout"
    );
}

/// What we want to test: the capacity guard counts an endpoint due a probe as out
/// until its probe succeeds, so it never lets the last endpoint in service be
/// ejected on the strength of one that may take a single call. Before, the probe-due
/// endpoint counted as in service.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_guard_does_not_count_an_endpoint_due_a_probe_as_in_service() {
    let accrual = FailureAccrual::default().max_ejected_fraction(1.0);
    let fleet = Fleet::new(2, accrual);
    ready(&fleet, 2).await;
    let (a, b) = (fleet.stats(0), fleet.stats(1));
    for _ in 0..5 {
        a.record(Verdict::Failure, Duration::from_millis(1), false);
    }
    until(Duration::from_secs(1), "a ejected", || {
        a.mode() == Mode::Ejected
    })
    .await;
    until(Duration::from_secs(2), "a due a probe", || {
        a.mode() == Mode::ProbeAllowed
    })
    .await;
    // b fails too, while no call has taken a's probe.
    for _ in 0..5 {
        b.record(Verdict::Failure, Duration::from_millis(1), false);
    }
    // Scenario time for the worker to handle the trip.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        b.mode(),
        Mode::In,
        "the last endpoint in service was ejected"
    );
}

/// What we want to test: with many probes due at once in a fleet of a thousand, each
/// of the next calls takes one, so all are taken within as many calls.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn many_probes_due_take_one_call_each_in_a_fleet_of_a_thousand() {
    const N: usize = 1_000;
    const EJECTED: usize = 20;
    let mut fleet = Fleet::new(N, FailureAccrual::default());
    ready(&fleet, N).await;
    let ejected: Vec<_> = (0..EJECTED).map(|i| fleet.stats(i * 37)).collect();
    for s in &ejected {
        for _ in 0..5 {
            s.record(Verdict::Failure, Duration::from_millis(1), false);
        }
    }
    until(Duration::from_secs(1), "all ejected", || {
        ejected.iter().all(|s| s.mode() == Mode::Ejected)
    })
    .await;
    until(Duration::from_secs(2), "all due a probe", || {
        ejected.iter().all(|s| s.mode() == Mode::ProbeAllowed)
    })
    .await;
    for _ in 0..EJECTED {
        assert_eq!(fleet.call().await, "0");
    }
    let back = ejected.iter().filter(|s| s.mode() == Mode::In).count();
    assert_eq!(back, EJECTED, "probes taken by the next {EJECTED} calls");
}

/// Runs `calls` calls one after another; how long each took, in paused time.
async fn timed_calls(fleet: &mut Fleet, calls: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = tokio::time::Instant::now();
        assert_eq!(fleet.call().await, "0", "every call answered");
        took.push(start.elapsed());
        eprintln!(
            "DBG {:?} s0={} s1={}",
            start.elapsed(),
            fleet.servers.streams(&addr(0)).len(),
            fleet.servers.streams(&addr(1)).len()
        );
    }
    took
}

/// Each call took no time (its first attempt went to the instance that answers) or
/// `ms` to the millisecond (its second attempt went after `ms`), and some took `ms`.
fn at_once_or_after(took: &[Duration], ms: u128) {
    let later = took.iter().filter(|t| t.as_millis() >= ms).count();
    assert!(
        later > 0,
        "some first attempts went to instance 0: {took:?}"
    );
    for t in took {
        let at_once = *t < Duration::from_millis(5);
        let after = (ms..ms + 5).contains(&t.as_millis());
        assert!(at_once || after, "{t:?}: at once, or after {ms} ms");
    }
}

/// What we want to test: a retry waits what the server's pushback says, to the
/// millisecond, under the paused clock; and a retry without pushback waits within its
/// jittered backoff (uniform below the bound).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_retry_waits_its_pushback_or_its_backoff() {
    use crate::balance::{MethodConfig, MethodName, RetryPolicy};
    let every = || MethodConfig::new([MethodName::all()]);
    let policy = RetryPolicy::new(2, [tonic::Code::Unavailable]).backoff(
        Duration::from_secs(1),
        Duration::from_secs(1),
        1.0,
    );
    let config = ServiceConfig::new().method(every().retry(policy));
    // Instance 0 fails every call with a 700 ms pushback; 1 answers.
    let mut fleet = Fleet::following(2, &config, |servers| {
        servers.answer_with(&addr(0), Answer::PushBack("14", "700"));
    });
    ready(&fleet, 2).await;
    at_once_or_after(&timed_calls(&mut fleet, 20).await, 700);

    // Without pushback: within the 1 s bound, and not all at once. A fleet gives one
    // retry (the failure penalty then keeps first attempts off instance 0), whose
    // wait is drawn uniformly below the bound: under 50 ms one time in twenty, so
    // fresh fleets are made until one waited longer (at most 30).
    let mut took = Vec::new();
    for _ in 0..30 {
        let mut fleet = Fleet::following(2, &config, |servers| {
            servers.set(&addr(0), "14");
        });
        ready(&fleet, 2).await;
        took.extend(timed_calls(&mut fleet, 3).await);
        if took.iter().any(|t| *t > Duration::from_millis(50)) {
            break;
        }
    }
    assert!(
        took.iter().all(|t| *t < Duration::from_millis(1005)),
        "{took:?}"
    );
    assert!(
        took.iter().any(|t| *t > Duration::from_millis(50)),
        "the backoff is a wait, drawn below its bound: {took:?}"
    );
}

/// What we want to test: a hedge goes out after its delay, to the millisecond, under
/// the paused clock, and answers a call its first instance never answers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hedge_goes_out_after_its_delay() {
    use crate::balance::{HedgingPolicy, MethodConfig, MethodName};
    let policy = HedgingPolicy::new(2, Duration::from_millis(300), []);
    let config = ServiceConfig::new().method(MethodConfig::new([MethodName::all()]).hedge(policy));
    // Instance 0 never answers (its streams are refused after an hour); 1 answers.
    let mut fleet = Fleet::following(2, &config, |servers| {
        servers.answer_with(&addr(0), Answer::Refuse(Duration::from_secs(3600)));
    });
    ready(&fleet, 2).await;
    at_once_or_after(&timed_calls(&mut fleet, 20).await, 300);
}

/// What we want to test: while the client's zone has endpoints in service, a call
/// the worker serves stays in the zone when they are all busy (at their stream
/// limit) for a moment: it waits for a stream there. Before, the worker's second
/// round drew uniformly from whatever was ready and sent it to the other zone (CI
/// caught 2 calls of 2,000 out of the zone in steady state).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_waits_for_its_busy_zone_rather_than_leave_it() {
    let mut fleet = Fleet::zoned(|_| {});
    ready(&fleet, 3).await;
    let zone_a = [fleet.stats(0), fleet.stats(1)];
    for stats in &zone_a {
        stats.set_max_streams(1);
        assert!(stats.try_reserve_stream(), "a free stream to hold");
    }
    let queued = tokio::spawn(fleet.send().await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !queued.is_finished(),
        "the call left its zone while the zone was busy"
    );
    // Ending the stream wakes the endpoint's waker (it was at its limit), which
    // wakes the worker.
    zone_a[0].stream_ended();
    assert_eq!(status(queued.await.expect("no panic")), "0");
    assert!(
        fleet.servers.streams(&addr(2)).is_empty(),
        "the zone-b endpoint was sent a call"
    );
    assert_eq!(fleet.servers.streams(&addr(0)).len(), 1);
}

/// What we want to test: a zone that keeps only part of the traffic (one of its two
/// endpoints down: 70%) does not hold a call while its one endpoint in service is
/// busy: the call goes to the other zone, as the spilled share does, instead of
/// waiting at the head of the queue while that zone could serve it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_zone_with_a_partial_share_does_not_hold_a_call() {
    let mut fleet = Fleet::zoned(|servers| servers.refuse(&addr(1)));
    until(Duration::from_secs(10), "a0 and b ready", || {
        let ready = |i| {
            fleet
                .registry
                .stats(&Fleet::key(i))
                .is_some_and(|s| s.state() == EndpointState::Ready)
        };
        ready(0) && ready(2)
    })
    .await;
    let a0 = fleet.stats(0);
    a0.set_max_streams(1);
    assert!(a0.try_reserve_stream(), "a free stream to hold");
    // Draws of zone a (70% of them) find a0 busy; the call must not wait for it (in
    // scenario time: only a1's reconnect attempts would wake a waiting worker).
    for _ in 0..20 {
        let started = tokio::time::Instant::now();
        let call = fleet.send().await;
        assert_eq!(status(call.await), "0");
        assert!(
            started.elapsed() < Duration::from_millis(10),
            "the call waited {:?} for the busy zone",
            started.elapsed()
        );
    }
    assert!(fleet.servers.streams(&addr(0)).is_empty());
    assert_eq!(fleet.servers.streams(&addr(2)).len(), 20);
}

/// What we want to test: a call that saw its connection lost takes the connection out
/// of use at once, for callers and the worker alike, before hyper's own task has
/// noticed. Before, a call waiting for a stream could be woken by the streams of a
/// killed server ending and be sent on its dead connection (scenario 11: one call
/// beyond those in flight failed at a kill in three of four runs).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_connection_a_call_saw_lost_takes_no_more_calls() {
    use crate::balance::call::{Call, Outcome};
    let mut fleet = Fleet::new(1, FailureAccrual::default());
    ready(&fleet, 1).await;
    let stats = fleet.stats(0);
    assert_eq!(fleet.servers.connects(&stats.address), 1);
    assert!(stats.direct_ready());
    let first = stats.connection();
    // A call on the current connection ends with it lost. The in-process server is
    // still up, so only the mark keeps the next call off the connection.
    assert!(stats.try_reserve_stream());
    Call::start_reserved(stats.clone(), false).finish(Outcome::ConnectionLost);
    assert!(!stats.direct_ready(), "callers stop sending on it at once");
    // The worker re-checks the endpoint without waiting for a draw to land on it.
    let servers = fleet.servers.clone();
    until(Duration::from_secs(2), "a new connection", || {
        servers.connects(&stats.address) == 2
    })
    .await;
    assert_eq!(fleet.call().await, "0");
    assert_eq!(
        fleet.servers.connects(&stats.address),
        2,
        "the call went on the new connection"
    );
    assert!(
        stats.direct_ready(),
        "the mark names the old connection only"
    );
    // A late loss reported for the old connection leaves the new one alone.
    assert_ne!(stats.connection(), first);
    stats.connection_lost(first);
    assert!(stats.direct_ready());
}
