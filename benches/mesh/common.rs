//! Servers, the registry and the three contenders.

use std::future::Future;
use std::time::Duration;

use consul_dev::ConsulDev;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_discovery::balance::{BalancedChannel, BalancedChannelBuilder, EndpointState};
use tonic_discovery::consul::{Client, Registration, RegistrationHandle};
use tonic_discovery::{BoxError, Instance, InstanceKey};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tower::discover::Change;

use crate::load::{Chan, boxed, echo};

pub type Res<T> = Result<T, BoxError>;

/// Run sizes: `--quick` or the full benchmark.
#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    /// Where JSON, Markdown sections and charts go.
    pub out: std::path::PathBuf,
}

impl Config {
    /// `full` normally, `quick` under `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }

    pub fn runs(&self) -> usize {
        self.pick(3, 1)
    }
}

/// One scenario's results: raw JSON and its section of BENCHMARKS.md.
#[derive(Debug)]
pub struct Section {
    pub key: &'static str,
    pub json: serde_json::Value,
    pub markdown: String,
}

/// Polls `cond` every 2 ms until it holds, or fails after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> Res<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while !cond().await {
        if Instant::now() > end {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Starts `n` in-process Echo servers named `<prefix>0..`.
pub async fn servers(prefix: &str, n: usize) -> Res<Vec<TestEchoServer>> {
    servers_with(prefix, n, None).await
}

/// As [`servers`], each closing every connection with a GOAWAY once it is `max_age`
/// old, when given.
pub async fn servers_with(
    prefix: &str,
    n: usize,
    max_age: Option<Duration>,
) -> Res<Vec<TestEchoServer>> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut builder = TestEchoServer::builder(format!("{prefix}{i}"));
        if let Some(age) = max_age {
            builder = builder.max_connection_age(age);
        }
        out.push(builder.start().await?);
    }
    Ok(out)
}

/// The in-process registry and a client of it.
#[derive(Debug)]
pub struct Registry {
    pub dev: ConsulDev,
    pub client: Client,
}

impl Registry {
    pub async fn start() -> Res<Registry> {
        let dev = ConsulDev::start().await?;
        let client = Client::builder(dev.url()).build()?;
        Ok(Registry { dev, client })
    }

    /// Registers `server` as an instance of `service`, id = the server's id. The TTL
    /// check is long so that no heartbeat interferes with a trial.
    pub async fn register(
        &self,
        service: &str,
        server: &TestEchoServer,
    ) -> Res<RegistrationHandle> {
        let reg = Registration::new(service, server.addr())
            .id(server.service().id())
            .ttl(Duration::from_secs(600))
            .heartbeat_interval(Duration::from_secs(200));
        Ok(self.client.register(reg).await?)
    }

    /// Registers every server as an instance of `service` and returns the handles and
    /// ours over them, once every instance is ready in it.
    pub async fn serve(
        &self,
        service: &str,
        servers: &[TestEchoServer],
    ) -> Res<(Vec<RegistrationHandle>, BalancedChannel)> {
        self.serve_with(service, servers, |b| b).await
    }

    /// As [`serve`](Self::serve), with ours built from the defaults as `settings`
    /// changes them.
    pub async fn serve_with(
        &self,
        service: &str,
        servers: &[TestEchoServer],
        settings: impl FnOnce(BalancedChannelBuilder) -> BalancedChannelBuilder,
    ) -> Res<(Vec<RegistrationHandle>, BalancedChannel)> {
        let mut handles = Vec::new();
        for s in servers {
            handles.push(self.register(service, s).await?);
        }
        let ours = settings(BalancedChannel::builder(service))
            .build(self.client.discovery(service).build())?;
        wait_ready(&ours, servers.len()).await?;
        Ok((handles, ours))
    }

    /// Ours: a `BalancedChannel` over `consul::Discovery` of `service`.
    pub fn ours(&self, service: &str) -> BalancedChannel {
        BalancedChannel::builder(service)
            .build(self.client.discovery(service).build())
            .expect("valid balancer settings")
    }

    /// tonic's balancer fed by the same discovery.
    pub fn tonic_fed(&self, service: &str) -> Chan {
        tonic_fed(self.client.discovery(service).build())
    }
}

/// tonic's balancer fed by `discovery` (any registry's).
pub fn tonic_fed<D, E>(discovery: D) -> Chan
where
    D: futures_util::Stream<Item = Result<Change<InstanceKey, Instance>, E>>
        + Send
        + Unpin
        + 'static,
    E: Into<BoxError> + 'static,
{
    boxed(tonic_discovery::balance::tonic_balancer::balance_channel(
        discovery,
        tonic_discovery::balance::tonic_balancer::http_endpoint,
    ))
}

/// Waits until `ours` holds `n` ready endpoints.
pub async fn wait_ready(ours: &BalancedChannel, n: usize) -> Res<()> {
    wait_for(Duration::from_secs(10), &format!("{n} ready"), || async {
        ready(ours) == n
    })
    .await
}

/// Plain: one tonic `Channel` to `server`.
pub async fn plain(server: &TestEchoServer) -> Res<Chan> {
    let channel = Endpoint::from_shared(format!("http://{}", server.addr()))?
        .connect()
        .await?;
    Ok(boxed(channel))
}

/// tonic-balance: `Channel::balance_list` over `servers`.
pub fn tonic_list(servers: &[TestEchoServer]) -> Res<Chan> {
    let mut endpoints = Vec::new();
    for s in servers {
        endpoints.push(Endpoint::from_shared(format!("http://{}", s.addr()))?);
    }
    Ok(boxed(Channel::balance_list(endpoints.into_iter())))
}

/// The instance ids of `servers`, as their answers name them.
pub fn ids(servers: &[TestEchoServer]) -> Vec<String> {
    servers
        .iter()
        .map(|s| s.service().id().to_owned())
        .collect()
}

/// How many of `channel`'s endpoints are ready.
pub fn ready(channel: &BalancedChannel) -> usize {
    let eps = channel.endpoints();
    eps.iter()
        .filter(|e| e.state() == EndpointState::Ready)
        .count()
}

/// Whether `channel` holds instance `id` (instance id or `host:port`) ready.
pub fn holds_ready(channel: &BalancedChannel, id: &str) -> bool {
    let eps = channel.endpoints();
    eps.iter()
        .any(|e| (e.key().id() == id || e.address() == id) && e.state() == EndpointState::Ready)
}

/// Whether `channel` holds instance `id` (instance id or `host:port`) at all.
pub fn holds(channel: &BalancedChannel, id: &str) -> bool {
    let eps = channel.endpoints();
    eps.iter().any(|e| e.key().id() == id || e.address() == id)
}

/// Calls until every one of `ids` has answered (for channels that cannot be observed).
pub async fn until_all_answer(chan: &Chan, ids: &[String]) -> Res<()> {
    let mut client = EchoClient::new(chan.clone());
    let mut seen = std::collections::HashSet::new();
    let end = Instant::now() + Duration::from_secs(10);
    while ids.iter().any(|id| !seen.contains(id)) {
        if Instant::now() > end {
            return Err(format!("not every instance of {ids:?} answered").into());
        }
        if let Ok(id) = echo(&mut client).await {
            seen.insert(id);
        }
    }
    Ok(())
}

/// The load average (1 min) from `/proc/loadavg`.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Milliseconds between two instants, signed.
pub fn ms_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

/// Spaces registry changes at least `gap` apart, so that the discovery's re-query
/// limit (a bucket of 2 queries refilled once per second by default) never delays a
/// measured change: each change meets a watch in steady state.
#[derive(Debug)]
pub struct Pacer {
    gap: Duration,
    last: Instant,
}

impl Pacer {
    pub fn new(gap: Duration) -> Pacer {
        Pacer {
            gap,
            last: Instant::now(),
        }
    }

    /// Waits until `gap` has passed since the previous change; returns the time now.
    pub async fn next(&mut self) -> Instant {
        tokio::time::sleep_until(self.last + self.gap).await;
        self.last = Instant::now();
        self.last
    }
}
