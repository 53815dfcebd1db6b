//! One fault trial, as scenarios 3 (dead), 7 (black hole), 8 (frozen) and 9 (max
//! connection age) run it: three servers under open-loop load through tonic's
//! balancer or ours (and, when the plan asks, ours with a retry policy), a fault at a
//! set time, every answer logged.

use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::consul::RegistrationHandle;
use tonic_discovery_testkit::TestEchoServer;

use crate::common::{self, Config, Registry, Res};
use crate::load::{Chan, Event, OpenLoad, boxed};
use crate::outcome::Runs;

/// The contenders, in the order they run within a run; the third only when the plan
/// says [`Plan::retrying`] (the tables zip these names with the runs they have).
pub const NAMES: [&str; 3] = ["tonic-balance", "ours", "ours + retry policy"];
/// Open-loop calls per second.
pub const RATE: u32 = 1000;
/// The servers of a trial.
pub const SERVERS: usize = 3;

/// What happens to the first `n` of the three servers at the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Killed: the listener and every connection close at once.
    Kill(usize),
    /// Answers every call at once with `UNAVAILABLE` (`EchoService::fail_with`).
    BlackHole(usize),
    /// Keeps its connections but neither reads nor writes (`TestEchoServer::freeze`).
    Freeze(usize),
    /// Nothing happens at one instant: the servers' own settings are the fault.
    Nothing,
}

impl Fault {
    /// How many servers it hits.
    pub fn count(self) -> usize {
        match self {
            Fault::Kill(n) | Fault::BlackHole(n) | Fault::Freeze(n) => n,
            Fault::Nothing => 0,
        }
    }

    async fn apply(self, servers: &mut Vec<TestEchoServer>) {
        match self {
            Fault::Kill(n) => {
                for server in servers.drain(..n).collect::<Vec<_>>() {
                    server.kill().await;
                }
            }
            Fault::BlackHole(n) => servers[..n]
                .iter()
                .for_each(|s| s.service().fail_with(Some(tonic::Code::Unavailable))),
            // Dropped at the end of the trial, which kills it frozen or not.
            Fault::Freeze(n) => servers[..n].iter().for_each(TestEchoServer::freeze),
            Fault::Nothing => {}
        }
    }
}

/// How a trial runs. The faulted instances stay registered and passing throughout.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The first letters of its service and server names (unique per scenario variant).
    pub tag: &'static str,
    pub fault: Fault,
    /// Load before the fault.
    pub before: Duration,
    /// Load after the fault.
    pub after: Duration,
    /// Each call's deadline (the load gives up on it then: `DeadlineExceeded`).
    pub deadline: Duration,
    /// The servers close every connection (GOAWAY) once it is this old.
    pub max_age: Option<Duration>,
    /// Ours' HTTP/2 keep-alive (interval, timeout); `None` keeps the defaults.
    pub keep_alive: Option<(Duration, Duration)>,
    /// The window after the fault that the failure share is counted over.
    pub window: Duration,
    /// Also runs ours with a retry policy for every method (gRFC A6: 3 attempts on
    /// `UNAVAILABLE`, `fleet::retrying`), the third of [`NAMES`].
    pub retrying: bool,
}

impl Plan {
    /// `fault` after 2 s of load (1 s with `--quick`), then `after` more; 2 s deadline,
    /// default servers and balancer, the failure share counted over all of `after`.
    pub fn new(cfg: &Config, tag: &'static str, fault: Fault, after: Duration) -> Plan {
        Plan {
            tag,
            fault,
            before: Duration::from_millis(cfg.pick(2000, 1000)),
            after,
            deadline: Duration::from_secs(2),
            max_age: None,
            keep_alive: None,
            window: after,
            retrying: false,
        }
    }

    /// The contenders it runs: the first two of [`NAMES`], or all three.
    pub fn contenders(&self) -> usize {
        if self.retrying { 3 } else { 2 }
    }
}

/// What one trial saw.
#[derive(Debug)]
pub struct Trial {
    /// Every answer, by send time.
    pub events: Vec<Event>,
    pub fault: Instant,
    /// When the load stopped sending.
    pub end: Instant,
    /// The ids of the faulted instances.
    pub faulted: Vec<String>,
    /// Ours only: the streams open on the faulted endpoints just before the fault, as
    /// the channel counts them (dispatched and not yet answered).
    pub open_at_fault: Option<usize>,
    /// Ours only, with a fault on some instances: when failure accrual took them out.
    pub ejection: Option<Ejection>,
    /// The connections the servers still running at the end accepted in all.
    pub connections: u64,
}

/// When ours' failure accrual held the faulted instances out, sampled every
/// [`SAMPLE`] from the fault to the end of the load.
#[derive(Debug, Clone, Copy)]
pub struct Ejection {
    /// Fault → the first sample with one of them ejected (or probing).
    pub first: Option<Duration>,
    /// The share of samples with one of them ejected (or probing), 0 to 1.
    pub share: f64,
}

const SAMPLE: Duration = Duration::from_millis(10);

/// Runs `plan` `cfg.runs()` times per contender, the contenders interleaved, with a
/// registry of its own; one [`Runs`] per contender, in [`NAMES`] order.
pub async fn runs(cfg: &Config, plan: &Plan) -> Res<Vec<Runs>> {
    let registry = Registry::start().await?;
    let mut out = vec![Runs::default(); plan.contenders()];
    for run in 0..cfg.runs() {
        for (i, runs) in out.iter_mut().enumerate() {
            let trial = trial(&registry, plan, run, i).await?;
            runs.record(&trial, plan.window);
            eprintln!("  run {run} {:<19} {}", NAMES[i], runs.last());
        }
    }
    Ok(out)
}

/// One trial of contender `i` (an index into [`NAMES`]).
pub async fn trial(registry: &Registry, plan: &Plan, run: usize, i: usize) -> Res<Trial> {
    let tag = format!("{}{run}{i}", plan.tag);
    let mut servers = common::servers_with(&format!("{tag}-"), SERVERS, plan.max_age).await?;
    let faulted = common::ids(&servers[..plan.fault.count()]);
    let (chan, ours, handles) = contender(registry, plan, &tag, &servers, i).await?;
    common::until_all_answer(&chan, &common::ids(&servers)).await?;
    let load = OpenLoad::start(chan, RATE, plan.deadline);
    sleep(plan.before).await;
    let open_at_fault = ours.as_ref().map(|o| open_streams(o, &faulted));
    let fault = Instant::now();
    plan.fault.apply(&mut servers).await;
    let ejection = match &ours {
        Some(ours) if !faulted.is_empty() => {
            Some(watch_ejection(ours, &faulted, fault, plan.after).await)
        }
        _ => {
            sleep_until(fault + plan.after).await;
            None
        }
    };
    let end = Instant::now();
    let events = load.finish().await;
    drop(handles);
    Ok(Trial {
        events,
        fault,
        end,
        faulted,
        open_at_fault,
        ejection,
        connections: servers
            .iter()
            .map(TestEchoServer::accepted_connections)
            .sum(),
    })
}

/// tonic-balance (`Channel::balance_list`) or ours (over `consul::Discovery`, with
/// the plan's keep-alive; the retry policy too for the third contender), and what
/// keeps ours' instances registered.
async fn contender(
    registry: &Registry,
    plan: &Plan,
    service: &str,
    servers: &[TestEchoServer],
    i: usize,
) -> Res<(Chan, Option<BalancedChannel>, Vec<RegistrationHandle>)> {
    if i == 0 {
        return Ok((common::tonic_list(servers)?, None, Vec::new()));
    }
    let keep_alive = plan.keep_alive;
    let (handles, ours) = registry
        .serve_with(service, servers, |b| {
            let b = if i == 2 {
                b.service_config(crate::fleet::retrying())
            } else {
                b
            };
            match keep_alive {
                Some((every, wait)) => b.http2_keep_alive_interval(every).keep_alive_timeout(wait),
                None => b,
            }
        })
        .await?;
    Ok((boxed(ours.clone()), Some(ours), handles))
}

/// Samples the states of `ids`' endpoints every [`SAMPLE`] for `span` after `fault`.
async fn watch_ejection(
    ours: &BalancedChannel,
    ids: &[String],
    fault: Instant,
    span: Duration,
) -> Ejection {
    let (mut first, mut out, mut samples) = (None, 0u32, 0u32);
    let mut tick = tokio::time::interval(SAMPLE);
    while tick.tick().await < fault + span {
        let held_out = ours.endpoints().iter().any(|e| {
            ids.iter().any(|id| id == e.key().id())
                && matches!(e.state(), EndpointState::Ejected | EndpointState::Probing)
        });
        samples += 1;
        if held_out {
            out += 1;
            first = first.or(Some(fault.elapsed()));
        }
    }
    Ejection {
        first,
        share: f64::from(out) / f64::from(samples.max(1)),
    }
}

/// The streams open on the endpoints of instances `ids`.
fn open_streams(ours: &BalancedChannel, ids: &[String]) -> usize {
    ours.endpoints()
        .iter()
        .filter(|e| ids.iter().any(|id| id == e.key().id()))
        .map(|e| e.open_streams())
        .sum()
}
