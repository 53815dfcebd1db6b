use std::time::Duration;

use super::target::Target;
use super::*;

#[test]
fn hosts_parse_or_say_why_not() {
    let ok = [
        ("localhost:1", "localhost:1"),
        ("echo.internal:50051", "echo.internal:50051"),
        ("127.0.0.1:2", "127.0.0.1:2"),
        ("[::1]:3", "[::1]:3"),
    ];
    for (addr, shown) in ok {
        let target = Target::host(addr).expect(addr);
        assert_eq!(target.to_string(), shown);
    }
    for bad in [
        "localhost",
        "h:0",
        ":80",
        "::1:80",
        "[h]:80",
        "h:x",
        "h:70000",
        "a..b:1",
    ] {
        let err = Target::host(bad).expect_err(bad);
        assert!(err.is_config() && err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn srv_names_parse() {
    let target = Target::srv("_grpc._tcp.example.com").unwrap();
    assert_eq!(format!("{target:?}"), "SRV _grpc._tcp.example.com");
    for bad in ["", ".", "a..b"] {
        assert!(Target::srv(bad).expect_err(bad).is_config());
    }
}

#[test]
fn service_config_names_are_dns_names_without_a_port() {
    use super::target::grpc_config_owner;
    let owner = grpc_config_owner("echo.internal.").unwrap();
    assert_eq!(owner, "_grpc_config.echo.internal.");
    for bad in ["", ".", "echo.internal:50051", "[::1]:1", "a..b"] {
        let err = grpc_config_owner(bad).expect_err(bad);
        assert!(err.is_config() && err.to_string().contains(bad), "{err}");
    }
    let long = ["x"; 130].join(".");
    assert!(grpc_config_owner(&long).unwrap_err().is_config());
}

#[test]
fn builds_outside_a_runtime_and_shows_its_settings() {
    let dns = Dns::builder()
        .nameserver("127.0.0.1:5353".parse().unwrap())
        .timeout(Duration::from_millis(200))
        .min_ttl(Duration::from_secs(2))
        .max_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let shown = format!("{dns:?}");
    assert!(shown.contains("127.0.0.1:5353"), "{shown}");
    // A maximum below the minimum is the minimum.
    assert!(shown.contains("max_ttl: 2s"), "{shown}");
    assert!(dns.host_discovery("localhost").unwrap_err().is_config());
    assert!(dns.srv_discovery("").unwrap_err().is_config());
    assert!(dns.service_config("echo:1").unwrap_err().is_config());
    // Built outside a runtime too: it resolves only when polled.
    let watch = dns.service_config("echo.internal").unwrap();
    assert_eq!(watch.origin(), "dns TXT _grpc_config.echo.internal");
}

#[tokio::test]
async fn discoveries_of_one_name_share_a_watch() {
    let dns = Dns::builder()
        .nameserver("127.0.0.1:9".parse().unwrap())
        .build()
        .unwrap();
    let a = dns.host_discovery("127.0.0.1:1").unwrap();
    let b = dns.host_discovery("127.0.0.1:1").unwrap();
    let c = dns.host_discovery("127.0.0.1:2").unwrap();
    assert_eq!(dns.inner.watches.len(), 2);
    drop((a, b, c));
    assert!(dns.inner.watches.is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waits_out_the_ttl_or_a_refresh_but_not_less_than_min_ttl() {
    use tokio::time::{Instant, advance};
    use tokio_test::{assert_pending, assert_ready, task};

    let dns = Dns::builder()
        .nameserver("127.0.0.1:9".parse().unwrap())
        .min_ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut refresh = dns.inner.refresh.subscribe();
    let hour = Duration::from_secs(3600);
    let started = Instant::now();
    let mut pause = task::spawn(dns.inner.pause(&mut refresh, started, hour));
    assert_pending!(pause.poll());
    advance(hour - Duration::from_secs(1)).await;
    assert_pending!(pause.poll());
    advance(Duration::from_secs(1)).await;
    assert_ready!(pause.poll());
    drop(pause);

    let started = Instant::now();
    let mut pause = task::spawn(dns.inner.pause(&mut refresh, started, hour));
    assert_pending!(pause.poll());
    advance(Duration::from_secs(1)).await;
    dns.refresh();
    assert!(pause.is_woken());
    // Asked 1 s after the last resolution started: 1 s more, to `min_ttl`.
    assert_pending!(pause.poll());
    advance(Duration::from_secs(1)).await;
    assert_ready!(pause.poll());
}
