//! Heartbeat and handle timing under tokio's paused clock, against a scripted agent.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::time::{sleep, timeout};

use super::*;
use crate::consul::handle::RegistrationHandle;
use crate::consul::register::Registration;

const SEC: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Register,
    Update(CheckStatus),
    Deregister,
}

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    Transport,
    Hang,
}

/// An agent that records every call with its time and answers update calls from a
/// script (`Ok` once the script is empty).
struct MockAgent {
    start: Instant,
    calls: Mutex<Vec<(Duration, Call)>>,
    script: Mutex<VecDeque<Reply>>,
    /// Wakes every waiter at each call.
    called: Notify,
    /// Signalled at each deregistration (kept for a later waiter).
    deregistered: Notify,
}

impl MockAgent {
    fn new(script: impl IntoIterator<Item = Reply>) -> Arc<Self> {
        Arc::new(MockAgent {
            start: Instant::now(),
            calls: Mutex::new(Vec::new()),
            script: Mutex::new(script.into_iter().collect()),
            called: Notify::new(),
            deregistered: Notify::new(),
        })
    }

    fn record(&self, call: Call) {
        let at = self.start.elapsed();
        self.calls.lock().unwrap().push((at, call));
        self.called.notify_waiters();
    }

    fn calls(&self) -> Vec<(Duration, Call)> {
        self.calls.lock().unwrap().clone()
    }

    fn times_of(&self, call: Call) -> Vec<Duration> {
        let calls = self.calls().into_iter();
        calls.filter(|(_, c)| *c == call).map(|(t, _)| t).collect()
    }
}

impl Agent for MockAgent {
    fn register(&self, _body: Bytes) -> BoxFuture<'_, Result<()>> {
        self.record(Call::Register);
        Box::pin(async { Ok(()) })
    }

    fn update_ttl<'a>(
        &'a self,
        _check_id: &'a str,
        status: CheckStatus,
        _output: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        self.record(Call::Update(status));
        let reply = self.script.lock().unwrap().pop_front();
        Box::pin(async move {
            match reply {
                None => Ok(()),
                Some(Reply::Status(code)) => Err(Error::http_status(code, "Unknown check ID")),
                Some(Reply::Transport) => Err(Error::transport("refused", "connection refused")),
                Some(Reply::Hang) => std::future::pending().await,
            }
        })
    }

    fn deregister<'a>(&'a self, _service_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.record(Call::Deregister);
        self.deregistered.notify_one();
        Box::pin(async { Ok(()) })
    }
}

/// TTL 3 s, so the heartbeat interval is 1 s.
fn resolved() -> Arc<Resolved> {
    resolved_with(Registration::new("echo", "127.0.0.1:7001".parse().unwrap()))
}

fn resolved_with(reg: Registration) -> Arc<Resolved> {
    let reg = reg.id("echo-1").ttl(3 * SEC).validate().unwrap();
    Arc::new(reg.resolve_with("127.0.0.1:7001".parse().unwrap()))
}

/// Runs the heartbeat for `span` of (paused) time.
async fn run_for(agent: &Arc<MockAgent>, health: HealthSource, span: Duration) {
    run_reg_for(agent, resolved(), health, span).await;
}

async fn run_reg_for(
    agent: &Arc<MockAgent>,
    reg: Arc<Resolved>,
    health: HealthSource,
    span: Duration,
) {
    let hb = Heartbeat::new(agent.clone(), reg, health);
    tokio::select! {
        () = hb.run() => unreachable!("the heartbeat never ends by itself"),
        () = sleep(span) => {}
    }
}

const PASSING: Call = Call::Update(CheckStatus::Passing);
const CRITICAL: Call = Call::Update(CheckStatus::Critical);

#[tokio::test(start_paused = true)]
async fn beats_every_third_of_the_ttl() {
    let agent = MockAgent::new([]);
    run_for(&agent, HealthSource::always_passing(), 10 * SEC + SEC / 2).await;
    let expected: Vec<_> = (1..=10).map(|n| n * SEC).collect();
    assert_eq!(agent.times_of(PASSING), expected);
    assert!(agent.times_of(Call::Register).is_empty());
}

#[tokio::test(start_paused = true)]
async fn retries_within_the_ttl_after_network_errors() {
    let agent = MockAgent::new([Reply::Transport; 6]);
    run_for(&agent, HealthSource::always_passing(), 6 * SEC).await;
    let times = agent.times_of(PASSING);
    // Attempts 1..=6 fail, the 7th succeeds; then the schedule is back to 1 s.
    assert!(times.len() >= 8, "{times:?}");
    assert_eq!(times[0], SEC);
    for pair in times[..7].windows(2) {
        let gap = pair[1] - pair[0];
        // backoff from interval/20 to interval/2, jitter 0.2
        assert!(
            gap >= SEC / 25 && gap <= SEC / 2,
            "retry gap {gap:?} in {times:?}"
        );
    }
    assert!(
        times[6] < 3 * SEC,
        "success must land inside the TTL: {times:?}"
    );
    assert_eq!(times[7] - times[6], SEC, "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn a_hung_call_is_cut_off_and_retried_inside_the_ttl() {
    let agent = MockAgent::new([Reply::Hang]);
    run_for(&agent, HealthSource::always_passing(), 3 * SEC).await;
    let times = agent.times_of(PASSING);
    assert_eq!(times[0], SEC);
    // Cut off after one interval, retried after at most half an interval.
    assert!(
        times[1] > 2 * SEC && times[1] <= 2 * SEC + SEC / 2,
        "{times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_fit_the_ttl_when_the_interval_is_half_of_it() {
    // TTL 3 s, interval 1.5 s: a hung call is cut off after 0.75 s and retried within
    // 0.375 s, before the TTL (3 s after the last success) runs out.
    let agent = MockAgent::new([Reply::Hang, Reply::Transport, Reply::Transport]);
    let reg = Registration::new("echo", "127.0.0.1:7001".parse().unwrap());
    let reg = resolved_with(reg.heartbeat_interval(SEC + SEC / 2));
    run_reg_for(&agent, reg, HealthSource::always_passing(), 3 * SEC).await;
    let times = agent.times_of(PASSING);
    assert_eq!(times[0], SEC + SEC / 2);
    assert!(times.len() >= 4, "{times:?}");
    assert!(times[3] < 3 * SEC, "{times:?}");
    let (backoff, call_timeout) = retry_bounds(SEC + SEC / 2, 3 * SEC);
    assert_eq!(call_timeout, 3 * SEC / 4);
    assert_eq!(backoff.max(), 3 * SEC / 8);
}

#[tokio::test(start_paused = true)]
async fn registers_again_when_the_agent_forgot_the_check() {
    for code in [404, 500] {
        let agent = MockAgent::new([Reply::Status(code)]);
        run_for(&agent, HealthSource::always_passing(), SEC + SEC / 2).await;
        let calls: Vec<_> = agent.calls().into_iter().map(|(_, c)| c).collect();
        assert_eq!(calls, [PASSING, Call::Register, PASSING], "after {code}");
        assert!(
            agent.calls().iter().all(|(t, _)| *t == SEC),
            "within the same beat"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn reports_a_health_change_at_once() {
    let agent = MockAgent::new([]);
    let (tx, rx) = watch::channel(true);
    let flip = async {
        sleep(SEC + SEC / 2).await;
        tx.send(false).unwrap();
        sleep(SEC + SEC / 4).await;
        tx.send(true).unwrap();
    };
    let run = run_for(&agent, HealthSource::watch(rx), 4 * SEC);
    tokio::join!(flip, run);
    let calls = agent.calls();
    let at = |t: Duration| calls.iter().find(|(at, _)| *at == t).map(|(_, c)| *c);
    assert_eq!(at(SEC), Some(PASSING));
    assert_eq!(at(SEC + SEC / 2), Some(CRITICAL), "{calls:?}");
    assert_eq!(at(2 * SEC + SEC / 2), Some(CRITICAL), "{calls:?}");
    assert_eq!(at(2 * SEC + 3 * SEC / 4), Some(PASSING), "{calls:?}");
    assert_eq!(at(3 * SEC + 3 * SEC / 4), Some(PASSING), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn callback_health_is_asked_at_every_beat() {
    let agent = MockAgent::new([]);
    run_for(&agent, HealthSource::from_fn(|| false), 2 * SEC + SEC / 2).await;
    assert_eq!(agent.times_of(CRITICAL), [SEC, 2 * SEC]);
}

async fn start(agent: &Arc<MockAgent>) -> RegistrationHandle {
    let reg = (*resolved()).clone();
    crate::consul::handle::start(agent.clone(), reg, HealthSource::always_passing())
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn drain_turns_critical_waits_then_deregisters() {
    let agent = MockAgent::new([]);
    let handle = start(&agent).await;
    sleep(SEC + SEC / 2).await;
    handle.drain(5 * SEC).await.unwrap();
    let calls = agent.calls();
    let at = SEC + SEC / 2;
    assert_eq!(
        calls,
        [
            (Duration::ZERO, Call::Register),
            (Duration::ZERO, PASSING),
            (SEC, PASSING),
            (at, CRITICAL),
            (at + 5 * SEC, Call::Deregister),
        ]
    );
}

/// Whether the agent is asked to deregister within `within` of (paused) time.
async fn deregistered_within(agent: &MockAgent, within: Duration) -> bool {
    timeout(within, agent.deregistered.notified()).await.is_ok()
}

/// Whether the agent gets no call at all for `span` of (paused) time.
async fn quiet_for(agent: &MockAgent, span: Duration) -> bool {
    timeout(span, agent.called.notified()).await.is_err()
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_beats_and_deregisters() {
    let agent = MockAgent::new([]);
    let handle = start(&agent).await;
    drop(handle);
    assert!(
        deregistered_within(&agent, 10 * SEC).await,
        "no deregistration after the drop"
    );
    assert!(quiet_for(&agent, 9 * SEC).await, "a call after the drop");
    let calls: Vec<_> = agent.calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(calls, [Call::Register, PASSING, Call::Deregister]);
}

#[tokio::test(start_paused = true)]
async fn abandoning_the_handle_stops_beats_and_leaves_the_registration() {
    let agent = MockAgent::new([]);
    let handle = start(&agent).await;
    handle.abandon();
    assert!(quiet_for(&agent, 9 * SEC).await, "a call after abandon");
    let calls: Vec<_> = agent.calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(calls, [Call::Register, PASSING]);
}
