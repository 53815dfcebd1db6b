//! HTTPS end to end with a CA generated in the test (`rcgen`): `ConsulDev` serves
//! TLS, the client verifies it (wrong CA and wrong name fail with errors that say
//! so), presents a client certificate when the registry requires one, and the
//! balanced channel reaches TLS gRPC instances registered by IP through a domain
//! override. `CONSUL_TLS_SERVER_NAME` and friends through the environment lookup:
//! `src/consul/tls_env_tests.rs`.
#![cfg(feature = "tls-ring")]

mod support;
#[path = "support/test_ca.rs"]
mod test_ca;

use std::error::Error as _;
use std::time::Duration;

use consul_dev::ConsulDev;
use support::eventually;
use test_ca::{Leaf, TestCa};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_discovery::balance::{BalancedChannel, TlsConfig};
use tonic_discovery::consul::{Client, ClientBuilder, Registration};
use tonic_discovery_testkit::EchoService;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tonic_discovery_testkit::pb::echo_server::EchoServer;

const T: Duration = Duration::from_secs(10);
/// The registry's only name; it listens on 127.0.0.1.
const CONSUL: &str = "consul.test";

struct Pki {
    ca: TestCa,
    client: Leaf,
}

fn pki() -> Pki {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new("tonic-discovery test CA");
    let client = ca.client("client.test");
    Pki { ca, client }
}

async fn https_dev(pki: &Pki, require_client_cert: bool) -> ConsulDev {
    let leaf = pki.ca.server(&[CONSUL]);
    let clients = require_client_cert.then_some(&pki.ca);
    ConsulDev::builder()
        .tls(TestCa::server_config(&leaf, clients))
        .start()
        .await
        .expect("HTTPS registry")
}

/// The whole error chain, as a user would print it.
fn chain(e: &tonic_discovery::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

async fn register(client: &Client) -> tonic_discovery::Result<()> {
    let addr = "127.0.0.1:7001".parse().expect("addr");
    let handle = client.register(Registration::new("probe", addr)).await?;
    handle.deregister().await
}

fn trusting(dev: &ConsulDev, pki: &Pki) -> ClientBuilder {
    Client::builder(dev.url())
        .ca_cert_pem(pki.ca.pem.clone())
        .tls_server_name(CONSUL)
}

#[tokio::test]
async fn verifies_the_registry_certificate() {
    support::trace_init();
    let pki = pki();
    let dev = https_dev(&pki, false).await;
    assert!(dev.url().starts_with("https://127.0.0.1:"));
    let client = trusting(&dev, &pki).build().expect("client");
    register(&client).await.expect("registers over HTTPS");

    let other = TestCa::new("another CA");
    let untrusting = (Client::builder(dev.url()).ca_cert_pem(other.pem.clone()))
        .tls_server_name(CONSUL)
        .build()
        .expect("client");
    let e = register(&untrusting).await.expect_err("unknown issuer");
    let text = chain(&e);
    assert!(e.is_transport(), "{text}");
    assert!(text.contains("certificate"), "says why: {text}");
    assert!(text.contains("UnknownIssuer"), "says why: {text}");
}

#[tokio::test]
async fn honours_the_server_name_override() {
    support::trace_init();
    let pki = pki();
    let dev = https_dev(&pki, false).await;
    let no_name = (Client::builder(dev.url()).ca_cert_pem(pki.ca.pem.clone()))
        .build()
        .expect("client");
    let e = register(&no_name)
        .await
        .expect_err("127.0.0.1 is not in the certificate");
    let text = chain(&e);
    assert!(
        text.contains("not valid for name \"127.0.0.1\""),
        "says why: {text}"
    );
    register(&trusting(&dev, &pki).build().expect("client"))
        .await
        .expect("verified as consul.test");
}

#[tokio::test]
async fn presents_a_client_certificate_when_required() {
    support::trace_init();
    let pki = pki();
    let dev = https_dev(&pki, true).await;
    let anonymous = trusting(&dev, &pki).build().expect("client");
    let e = register(&anonymous)
        .await
        .expect_err("no client certificate");
    assert!(e.is_transport(), "{}", chain(&e));
    assert_eq!(dev.request_count("/v1/agent/service/register"), 0);
    let client = (trusting(&dev, &pki)
        .client_identity(pki.client.cert.clone(), pki.client.key.clone()))
    .build()
    .expect("client");
    register(&client).await.expect("mutual TLS");
    assert_eq!(dev.request_count("/v1/agent/service/register"), 1);
}

/// A TLS Echo server for `echo.test` on 127.0.0.1.
async fn tls_echo(pki: &Pki, id: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let leaf = pki.ca.server(&["echo.test"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(&leaf.cert, &leaf.key)))
        .expect("tls config")
        .add_service(EchoServer::new(EchoService::new(id)))
        .serve_with_incoming(incoming);
    let task = tokio::spawn(async move { server.await.expect("server") });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_all_the_way_from_registration_to_call() {
    support::trace_init();
    let pki = pki();
    let dev = https_dev(&pki, true).await;
    let client = (trusting(&dev, &pki)
        .client_identity(pki.client.cert.clone(), pki.client.key.clone()))
    .build()
    .expect("client");
    let (addr, server) = tls_echo(&pki, "tls-a").await;
    let handle = (client.register(Registration::new("echo", addr).id("tls-a")))
        .await
        .expect("register");
    // Registered by IP; the certificate names echo.test.
    let tls = TlsConfig::new(&pki.ca.pem)
        .expect("CA")
        .domain_name("echo.test");
    let channel = BalancedChannel::builder("echo")
        .tls(tls)
        .build(client.discovery("echo").build())
        .expect("valid balancer settings");
    eventually(T, "a call over TLS succeeds", || async {
        let mut echo = EchoClient::new(channel.clone());
        echo.echo(EchoRequest::default())
            .await
            .is_ok_and(|r| r.into_inner().instance_id == "tls-a")
    })
    .await;
    handle.deregister().await.expect("deregister");
    server.abort();
}
