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
