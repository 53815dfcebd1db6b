//! The loopback Echo server that every other test relies on.

mod support;

use tonic::transport::Endpoint;
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

#[tokio::test]
async fn answers_with_its_id_and_counts() {
    support::trace_init();
    let server = TestEchoServer::start("a").await.unwrap();
    let channel = Endpoint::from_shared(format!("http://{}", server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = EchoClient::new(channel);
    let reply = client
        .echo(EchoRequest {
            message: b"hi".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, b"hi");
    assert_eq!(reply.instance_id, "a");
    assert_eq!(server.service().served(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn kill_closes_established_connections() {
    support::trace_init();
    let server = TestEchoServer::start("k").await.unwrap();
    let addr = server.addr();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = EchoClient::new(channel);
    let req = || EchoRequest { message: vec![] };
    client.echo(req()).await.unwrap();
    server.kill().await;
    // The established HTTP/2 connection is gone and nothing listens any more.
    assert!(client.echo(req()).await.is_err());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
