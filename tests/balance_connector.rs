//! A custom connector: every connection goes through a Unix socket instead of TCP.
#![cfg(unix)]

mod balance_util;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use balance_util::{call, discovery};
use tonic::transport::Server;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery_testkit::EchoService;
use tonic_discovery_testkit::pb::echo_server::EchoServer;

#[tokio::test]
async fn calls_go_through_the_connector() {
    support::trace_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind the socket");
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let server = tokio::spawn(
        Server::builder()
            .add_service(EchoServer::new(EchoService::new("uds-1")))
            .serve_with_incoming(incoming),
    );
    let uris = Arc::new(std::sync::Mutex::new(Vec::new()));
    let opened = Arc::new(AtomicUsize::new(0));
    let connector = {
        let (uris, opened, path) = (uris.clone(), opened.clone(), path.clone());
        tower::service_fn(move |uri: http::Uri| {
            uris.lock().expect("lock").push(uri.to_string());
            opened.fetch_add(1, Ordering::Relaxed);
            tokio::net::UnixStream::connect(path.clone())
        })
    };
    let (feed, disc) = discovery();
    // Registered at an address nothing listens on: only the connector reaches it.
    feed.insert_at("uds-1", ([127, 0, 0, 1], 1).into());
    let channel = BalancedChannel::builder("echo")
        .connector(connector)
        .build(disc)
        .expect("valid settings");
    for _ in 0..3 {
        assert_eq!(
            call(&channel).await.expect("answered over the socket"),
            "uds-1"
        );
    }
    assert_eq!(opened.load(Ordering::Relaxed), 1, "one connection, reused");
    assert_eq!(
        uris.lock().expect("lock").as_slice(),
        ["http://127.0.0.1:1/"]
    );
    server.abort();
}
