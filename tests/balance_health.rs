//! Client-side health checking (gRFC A17) against real servers: `NOT_SERVING` takes an
//! endpoint out ahead of the registry, `SERVING` brings it back, a server without a
//! health service serves.

mod balance_util;
mod support;

use std::time::Duration;

use balance_util::{call, discovery, state};
use support::eventually;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery_testkit::{H2FaultServer, TestEchoServer};

const WAIT: Duration = Duration::from_secs(10);
const ECHO: &str = "echo.v1.Echo";

#[tokio::test]
async fn not_serving_takes_the_endpoint_out_and_serving_brings_it_back() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("server");
    let b = TestEchoServer::start("b").await.expect("server");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .health_check(ECHO)
        .build(disc)
        .expect("settings");
    feed.insert(&a);
    feed.insert(&b);
    eventually(WAIT, "both ready", || async {
        balance_util::all_ready(&channel, 2)
    })
    .await;

    a.set_serving(false).await;
    eventually(WAIT, "a not serving", || async {
        state(&channel, "a") == Some(EndpointState::NotServing)
    })
    .await;
    let served_before = a.service().served();
    for _ in 0..100 {
        assert_eq!(call(&channel).await.expect("call"), "b");
    }
    assert_eq!(a.service().served(), served_before);

    a.set_serving(true).await;
    eventually(WAIT, "a serving again", || async {
        state(&channel, "a") == Some(EndpointState::Ready)
            && call(&channel).await.is_ok_and(|id| id == "a")
    })
    .await;
    // The connection was kept throughout.
    assert_eq!(a.accepted_connections(), 1);
}

#[tokio::test]
async fn a_server_without_a_health_service_serves() {
    support::trace_init();
    let server = H2FaultServer::start("raw").expect("h2 server");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .health_check(ECHO)
        .build(disc)
        .expect("settings");
    feed.insert_at("raw", server.addr());
    eventually(WAIT, "ready", || async {
        state(&channel, "raw") == Some(EndpointState::Ready)
    })
    .await;
    for _ in 0..20 {
        assert_eq!(call(&channel).await.expect("call"), "raw");
    }
    assert_eq!(state(&channel, "raw"), Some(EndpointState::Ready));
}

#[tokio::test]
async fn an_unknown_service_name_is_not_serving() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("server");
    let b = TestEchoServer::start("b").await.expect("server");
    let (feed, disc) = discovery();
    // tonic's health service answers Watch for an unknown name with SERVICE_UNKNOWN.
    let channel = BalancedChannel::builder("echo")
        .health_check("no.such.Service")
        .failfast_timeout(Duration::from_millis(300))
        .build(disc)
        .expect("settings");
    feed.insert(&a);
    feed.insert(&b);
    eventually(WAIT, "both not serving", || async {
        let eps = channel.endpoints();
        eps.len() == 2 && eps.iter().all(|e| e.state() == EndpointState::NotServing)
    })
    .await;
    let err = call(&channel).await.expect_err("nothing serves");
    assert_eq!(err.code(), tonic::Code::Unavailable);
}
