//! The faults the test servers inject for gray-failure tests: failing calls, a frozen
//! process, connection limits and ages, refused streams and GOAWAYs.

mod support;

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tonic_discovery_testkit::pb::{EchoRequest, EchoStreamRequest};
use tonic_discovery_testkit::{H2FaultServer, TestEchoServer};

const WAIT: Duration = Duration::from_secs(10);

fn client(addr: SocketAddr) -> EchoClient<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
    EchoClient::new(endpoint.connect_lazy())
}

fn request(message: &[u8]) -> EchoRequest {
    EchoRequest {
        message: message.to_vec(),
    }
}

/// The `h2::Error` somewhere in `status`'s source chain.
fn h2_error(status: &Status) -> Option<&h2::Error> {
    let mut source = status.source();
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = err.source();
    }
    None
}

/// Checks, for `window`, that `cond` keeps holding: for asserting that something
/// does *not* happen, never to wait for something.
async fn stays(window: Duration, what: &str, cond: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        assert!(cond(), "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn fail_with_answers_unary_calls_with_the_code() {
    support::trace_init();
    let server = TestEchoServer::start("f").await.unwrap();
    let mut client = client(server.addr());
    server.service().fail_with(Some(Code::Unavailable));
    // Neither the delay nor a hold applies to a failing call.
    server.service().set_delay(Duration::from_secs(60));
    let hold = server.service().hold();

    let status = client.echo(request(b"x")).await.expect_err("injected");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "injected failure");
    let service = server.service();
    assert_eq!(
        (service.received(), service.failed(), service.served()),
        (1, 1, 0)
    );

    service.fail_with(None);
    service.set_delay(Duration::ZERO);
    drop(hold);
    let reply = client.echo(request(b"x")).await.unwrap().into_inner();
    assert_eq!(reply.instance_id, "f");
    assert_eq!(
        (service.received(), service.failed(), service.served()),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn fail_with_ends_a_stream_with_the_code_after_its_messages() {
    support::trace_init();
    let server = TestEchoServer::start("s").await.unwrap();
    server.service().fail_with(Some(Code::Internal));
    let response = client(server.addr())
        .echo_stream(EchoStreamRequest {
            message: b"m".to_vec(),
            count: 3,
            interval_ms: 0,
        })
        .await
        .expect("a 200 response");
    let mut stream = response.into_inner();
    for _ in 0..3 {
        let reply = stream.message().await.expect("ok").expect("a message");
        assert_eq!(reply.message, b"m");
    }
    let status = stream
        .message()
        .await
        .expect_err("the status in the trailers");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
}

/// A deadline the client enforced (tonic's channel reports it as `Cancelled`,
/// "Timeout expired").
fn is_deadline(status: &Status) -> bool {
    status.code() == Code::DeadlineExceeded
        || (status.code() == Code::Cancelled && status.message() == "Timeout expired")
}

#[tokio::test]
async fn frozen_server_answers_nothing_until_thawed() {
    support::trace_init();
    let server = TestEchoServer::start("z").await.unwrap();
    let mut open = client(server.addr());
    open.echo(request(b"warm")).await.unwrap();
    server.freeze();
    let mut fresh = client(server.addr());
    let timed = |message: &[u8]| {
        let mut req = tonic::Request::new(request(message));
        req.set_timeout(Duration::from_millis(300));
        req
    };
    let (on_open, on_fresh) = tokio::join!(open.echo(timed(b"a")), fresh.echo(timed(b"b")));
    for result in [on_open, on_fresh] {
        let status = result.expect_err("frozen");
        assert!(is_deadline(&status), "{status:?}");
    }
    // The new connection was accepted; the server read nothing of either call.
    support::eventually(WAIT, "the second connection accepted", || async {
        server.accepted_connections() == 2
    })
    .await;
    assert_eq!(server.service().received(), 1);

    server.thaw();
    let reply = open.echo(request(b"c")).await.unwrap().into_inner();
    assert_eq!(reply.message, b"c");
    fresh.echo(request(b"d")).await.unwrap();
}

#[tokio::test]
async fn frozen_server_is_killed_at_once() {
    support::trace_init();
    let server = TestEchoServer::start("k").await.unwrap();
    let addr = server.addr();
    let mut client = client(addr);
    client.echo(request(b"warm")).await.unwrap();
    server.freeze();
    let call = tokio::spawn(async move { client.echo(request(b"x")).await });
    tokio::time::timeout(WAIT, server.kill())
        .await
        .expect("kill returns");
    let result = tokio::time::timeout(WAIT, call).await.expect("call ends");
    assert!(result.unwrap().is_err());
}

#[tokio::test]
async fn max_concurrent_streams_is_advertised() {
    support::trace_init();
    let server = TestEchoServer::builder("m")
        .max_concurrent_streams(1)
        .start()
        .await
        .unwrap();
    let mut client = client(server.addr());
    // One call first, so that the client has the server's SETTINGS.
    client.echo(request(b"warm")).await.unwrap();
    let service = server.service().clone();
    let hold = service.hold();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.echo(request(b"held")).await })
        })
        .collect();
    support::eventually(WAIT, "one held call arrives", || async {
        service.received() == 2
    })
    .await;
    stays(Duration::from_millis(200), "the second call waits", || {
        service.received() == 2
    })
    .await;
    drop(hold);
    for call in calls {
        call.await.unwrap().expect("answered after the release");
    }
    assert_eq!(service.received(), 3);
    assert_eq!(server.accepted_connections(), 1);
}

#[tokio::test]
async fn max_connection_age_moves_a_busy_client_to_new_connections() {
    support::trace_init();
    let server = TestEchoServer::builder("age")
        .max_connection_age(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let mut client = client(server.addr());
    client.echo(request(b"first")).await.unwrap();
    let server = &server;
    support::eventually(WAIT, "a second connection", || {
        let mut client = client.clone();
        async move {
            // A call racing the GOAWAY may fail; the next one reconnects.
            let _ = client.echo(request(b"again")).await;
            server.accepted_connections() >= 2
        }
    })
    .await;
    client.echo(request(b"last")).await.unwrap();
}

#[tokio::test]
async fn refused_streams_fail_with_refused_stream_and_are_not_processed() {
    support::trace_init();
    let server = H2FaultServer::start("r").unwrap();
    let mut client = client(server.addr());
    let reply = client.echo(request(b"hi")).await.unwrap().into_inner();
    assert_eq!(
        (reply.message.as_slice(), reply.instance_id.as_str()),
        (&b"hi"[..], "r")
    );

    server.refuse_next(1);
    let status = client.echo(request(b"no")).await.expect_err("refused");
    let h2 = h2_error(&status).unwrap_or_else(|| panic!("no h2 error in {status:?}"));
    assert!(h2.is_reset() && h2.is_remote(), "{h2:?}");
    assert_eq!(h2.reason(), Some(h2::Reason::REFUSED_STREAM));
    assert_eq!((server.processed(), server.refused()), (1, 1));

    client.echo(request(b"yes")).await.unwrap();
    assert_eq!((server.processed(), server.refused()), (2, 1));
    assert_eq!(server.accepted_connections(), 1);
}

#[tokio::test]
async fn goaway_refuses_the_streams_beyond_the_last_processed() {
    support::trace_init();
    let server = H2FaultServer::start("g").unwrap();
    server.goaway_after(Some(1));
    let client = client(server.addr());
    // Both calls on the one connection, sent together or one after the other: the
    // server takes up one and refuses the other with its GOAWAY.
    let calls: Vec<_> = [b"a", b"b"]
        .map(|message| {
            let mut client = client.clone();
            tokio::spawn(async move { client.echo(request(message)).await })
        })
        .into_iter()
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let (ok, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!((ok.len(), failed.len()), (1, 1), "{failed:?}");
    let status = failed[0].as_ref().unwrap_err();
    let h2 = h2_error(status).unwrap_or_else(|| panic!("no h2 error in {status:?}"));
    assert!(h2.is_go_away() && h2.is_remote(), "{h2:?}");
    assert_eq!(h2.reason(), Some(h2::Reason::NO_ERROR));
    assert_eq!((server.processed(), server.goaways()), (1, 1));

    // The client moves to a new connection, which takes up one stream in turn.
    let mut client = client;
    client.echo(request(b"c")).await.unwrap();
    assert_eq!(server.processed(), 2);
    assert_eq!(server.accepted_connections(), 2);
}

#[tokio::test]
async fn goaway_after_a_sequence_of_calls() {
    support::trace_init();
    let server = H2FaultServer::start("q").unwrap();
    server.goaway_after(Some(2));
    let mut client = client(server.addr());
    client.echo(request(b"1")).await.unwrap();
    client.echo(request(b"2")).await.unwrap();
    assert_eq!(server.goaways(), 0, "no GOAWAY before a stream is refused");
    let status = client.echo(request(b"3")).await.expect_err("refused");
    let h2 = h2_error(&status).unwrap_or_else(|| panic!("no h2 error in {status:?}"));
    assert!(h2.is_go_away(), "{h2:?}");
    assert_eq!((server.processed(), server.goaways()), (2, 1));

    server.goaway_after(None);
    for _ in 0..3 {
        client.echo(request(b"more")).await.unwrap();
    }
    assert_eq!((server.processed(), server.goaways()), (5, 1));
    assert_eq!(server.accepted_connections(), 2);
}

#[tokio::test]
async fn fault_server_survives_garbage_and_answers_other_methods_with_a_status() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    support::trace_init();
    let server = H2FaultServer::start("x").unwrap();
    let mut raw = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x01\x00\x00\x00\x00\x01garbage")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut sink)).await;

    let mut client = client(server.addr());
    let status = client
        .echo_stream(EchoStreamRequest::default())
        .await
        .expect_err("not served");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    client.echo(request(b"ok")).await.unwrap();
    assert_eq!(server.processed(), 2);
}
