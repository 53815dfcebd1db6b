//! DNS discovery against real resolution on loopback: `localhost` through the system
//! resolver, and an authoritative server in process for SRV, TTL re-resolution,
//! refresh, NXDOMAIN and a nameserver outage.
#![cfg(feature = "dns")]

mod balance_util;
mod support;
#[path = "source_dns/zone.rs"]
mod zone;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use balance_util::call;
use support::eventually;
use tonic_discovery::Backoff;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::source::{Dns, WatchObserver};
use tonic_discovery_testkit::TestEchoServer;
use zone::TestZone;

const WAIT: Duration = Duration::from_secs(10);
const LOCALHOST: [u8; 4] = [127, 0, 0, 1];

/// A `Dns` asking only `zone`, quick to give up and retry.
fn dns(zone: &TestZone) -> Dns {
    Dns::builder()
        .nameserver(zone.addr())
        .timeout(Duration::from_millis(250))
        .min_ttl(Duration::from_millis(50))
        .backoff(Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .build()
        .expect("resolver")
}

/// The instance ids (`ip:port`) the watch holds now.
/// Watches `echo.test.:7000` through `dns` and waits for its first answer, 127.0.0.1.
async fn watch_first(dns: &Dns) -> (tonic_discovery::source::Discovery, WatchObserver) {
    let discovery = dns.host_discovery("echo.test.:7000").expect("target");
    let observer = discovery.observer();
    eventually(WAIT, "first answer", || async {
        ids(&observer) == set(["127.0.0.1:7000"])
    })
    .await;
    (discovery, observer)
}

fn ids(observer: &WatchObserver) -> BTreeSet<String> {
    let state = observer.state();
    state
        .instances()
        .iter()
        .map(|i| i.id().to_owned())
        .collect()
}

fn set<const N: usize>(ids: [&str; N]) -> BTreeSet<String> {
    ids.into_iter().map(str::to_owned).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

#[tokio::test]
async fn resolves_localhost_with_the_system_resolver_and_serves_calls() {
    support::trace_init();
    let server = TestEchoServer::start("a").await.expect("echo server");
    let port = server.addr().port();
    let dns = Dns::builder().build().expect("system resolver");
    let discovery = dns
        .host_discovery(&format!("localhost:{port}"))
        .expect("target");
    let observer = discovery.observer();
    let channel = BalancedChannel::builder("echo")
        .build(discovery)
        .expect("channel");

    let v4 = format!("127.0.0.1:{port}");
    eventually(WAIT, "localhost resolved", || async {
        ids(&observer).contains(&v4)
    })
    .await;
    // `localhost` is 127.0.0.1 and ::1: ::1 has no server, so its endpoint never
    // becomes ready and every call goes to 127.0.0.1.
    for _ in 0..20 {
        assert_eq!(call(&channel).await.expect("call"), "a");
    }
    assert_eq!(observer.state().consecutive_failures(), 0);
}

#[tokio::test]
async fn follows_address_records_after_their_ttl() {
    support::trace_init();
    let zone = TestZone::start().await;
    zone.set_addrs("echo.test.", &[ip("127.0.0.1")], 1).await;
    let dns = dns(&zone);
    let (_keep, observer) = watch_first(&dns).await;
    let first_answers = observer.state().answers();
    let changed_at = tokio::time::Instant::now();

    zone.set_addrs("echo.test.", &[ip("127.0.0.1"), ip("::1")], 1)
        .await;
    eventually(WAIT, "the new address after the TTL", || async {
        ids(&observer) == set(["127.0.0.1:7000", "[::1]:7000"])
    })
    .await;
    // Resolutions follow the 1 s TTL, not the 50 ms minimum: at most one a second
    // since the change, and one more for the TTL that ran when it was made.
    let answers = observer.state().answers() - first_answers;
    let bound = changed_at.elapsed().as_secs() + 1;
    assert!(answers <= bound, "{answers} answers, more than {bound}");
}

#[tokio::test]
async fn srv_records_become_instances_and_serve_calls() {
    support::trace_init();
    let (a, b) = (
        TestEchoServer::start("a").await.expect("a"),
        TestEchoServer::start("b").await.expect("b"),
    );
    let zone = TestZone::start().await;
    zone.set_addrs("a.test.", &[LOCALHOST.into()], 1).await;
    zone.set_addrs("b.test.", &[LOCALHOST.into()], 1).await;
    let srv = "_grpc._tcp.echo.test.";
    let (pa, pb) = (a.addr().port(), b.addr().port());
    zone.set_srv(srv, &[(0, 10, pa, "a.test."), (1, 0, pb, "b.test.")], 1)
        .await;
    let dns = dns(&zone);
    let discovery = dns.srv_discovery(srv).expect("target");
    let observer = discovery.observer();
    let channel = BalancedChannel::builder("echo")
        .build(discovery)
        .expect("channel");

    let (ka, kb) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    eventually(WAIT, "both SRV targets", || async {
        ids(&observer).len() == 2
    })
    .await;
    let state = observer.state();
    let by_id = |id: &str| state.instances().iter().find(|i| i.id() == id).cloned();
    let ia = by_id(&ka).expect("a's instance");
    assert_eq!(ia.meta()["srv.target"], "a.test.");
    assert_eq!((ia.meta()["srv.priority"].as_str(), ia.weight()), ("0", 10));
    let ib = by_id(&kb).expect("b's instance");
    assert_eq!((ib.meta()["srv.weight"].as_str(), ib.weight()), ("0", 1));
    support::calls_reach(WAIT, &channel, &["a", "b"]).await;

    // b's record goes: after the TTL, calls stop reaching b.
    zone.set_srv(srv, &[(0, 10, pa, "a.test.")], 1).await;
    eventually(WAIT, "b's endpoint gone", || async {
        let endpoints = channel.endpoints();
        endpoints.len() == 1 && endpoints[0].key().id() == ka
    })
    .await;
    let served = b.service().served();
    for _ in 0..20 {
        assert_eq!(call(&channel).await.expect("call"), "a");
    }
    assert_eq!(
        b.service().served(),
        served,
        "b was called after its removal"
    );
}

#[tokio::test]
async fn refresh_resolves_before_the_ttl() {
    support::trace_init();
    let zone = TestZone::start().await;
    zone.set_addrs("echo.test.", &[ip("127.0.0.1")], 3600).await;
    let dns = dns(&zone);
    let (_keep, observer) = watch_first(&dns).await;

    zone.set_addrs("echo.test.", &[ip("::1")], 3600).await;
    dns.refresh();
    eventually(WAIT, "the new address, long before the TTL", || async {
        ids(&observer) == set(["[::1]:7000"])
    })
    .await;
}

#[tokio::test]
async fn keeps_the_set_while_the_nameserver_is_down_and_recovers() {
    support::trace_init();
    let mut zone = TestZone::start().await;
    zone.set_addrs("echo.test.", &[ip("127.0.0.1")], 1).await;
    let dns = dns(&zone);
    let discovery = dns.host_discovery("echo.test.:7000").expect("target");
    let observer = discovery.observer();
    let _keep = discovery;
    let want = set(["127.0.0.1:7000"]);
    eventually(WAIT, "first answer", || async { ids(&observer) == want }).await;

    zone.stop().await;
    eventually(WAIT, "failures counted", || async {
        observer.state().consecutive_failures() >= 2
    })
    .await;
    let state = observer.state();
    assert!(state.last_error().is_some(), "{state:?}");
    assert_eq!(ids(&observer), want, "the set is kept through the outage");

    zone.set_addrs("echo.test.", &[ip("127.0.0.1"), ip("::1")], 1)
        .await;
    zone.restart().await;
    eventually(WAIT, "recovered with the new set", || async {
        let state = observer.state();
        state.consecutive_failures() == 0 && state.instances().len() == 2
    })
    .await;
    assert_eq!(observer.state().last_error(), None);
}

#[tokio::test]
async fn nxdomain_keeps_the_set_and_a_dot_target_empties_it() {
    support::trace_init();
    let zone = TestZone::start().await;
    zone.set_addrs("a.test.", &[ip("127.0.0.1")], 1).await;
    let srv = "_grpc._tcp.echo.test.";
    zone.set_srv(srv, &[(0, 0, 7000, "a.test.")], 1).await;
    let dns = dns(&zone);
    let discovery = dns.srv_discovery(srv).expect("target");
    let observer = discovery.observer();
    let _keep = discovery;
    let want = set(["127.0.0.1:7000"]);
    eventually(WAIT, "first answer", || async { ids(&observer) == want }).await;

    // The name goes: NXDOMAIN is a failure, and the set stays.
    zone.remove(srv, hickory_server::proto::rr::RecordType::SRV)
        .await;
    eventually(WAIT, "NXDOMAIN counted as a failure", || async {
        let state = observer.state();
        state.consecutive_failures() >= 1
            && state.last_error().is_some_and(|e| e.contains("NXDOMAIN"))
    })
    .await;
    assert_eq!(ids(&observer), want);

    // "." says the service is decidedly not available: the set empties.
    zone.set_srv(srv, &[(0, 0, 0, ".")], 1).await;
    eventually(WAIT, "an empty set", || async {
        let state = observer.state();
        state.consecutive_failures() == 0 && state.instances().is_empty()
    })
    .await;
}
