//! A service config in DNS (gRFC A2) against an authoritative server in process: the
//! TXT record of `_grpc_config.echo.test.` absent, set, changed, malformed and
//! removed, and a nameserver outage.
#![cfg(feature = "dns")]

mod support;
// Shared with `source_dns.rs`; the address and SRV setters are its own.
#[allow(dead_code)]
#[path = "source_dns/zone.rs"]
mod zone;

use std::time::Duration;

use futures_util::StreamExt;
use hickory_server::proto::rr::RecordType;
use tonic_discovery::Backoff;
use tonic_discovery::source::{ConfigUpdate, Dns, ServiceConfigWatch};
use zone::TestZone;

const WAIT: Duration = Duration::from_secs(10);
const OWNER: &str = "_grpc_config.echo.test.";

/// A choice for Go only, then one for every client.
const FIRST: &str = r#"grpc_config=[{"clientLanguage":["go"],"serviceConfig":{"loadBalancingPolicy":"grpclb"}},{"serviceConfig":{"methodConfig":[{"name":[{"service":"echo.v1.Echo"}],"timeout":"1s"}]}}]"#;
const FIRST_CHOSEN: &str =
    r#"{"methodConfig":[{"name":[{"service":"echo.v1.Echo"}],"timeout":"1s"}]}"#;
const SECOND: &str =
    r#"grpc_config=[{"percentage":100,"serviceConfig":{"loadBalancingPolicy":"round_robin"}}]"#;
const SECOND_CHOSEN: &str = r#"{"loadBalancingPolicy":"round_robin"}"#;

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

async fn next(watch: &mut ServiceConfigWatch) -> ConfigUpdate {
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("an update in time")
        .expect("the watch never ends")
}

fn crate_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> &'a tonic_discovery::Error {
    err.downcast_ref().expect("the crate's error")
}

fn doc(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[tokio::test]
async fn follows_the_txt_record_from_absent_to_removed() {
    support::trace_init();
    let zone = TestZone::start().await;
    let dns = dns(&zone);
    let mut watch = dns.service_config("echo.test.").expect("name");
    assert_eq!(watch.origin(), format!("dns TXT {OWNER}"));

    // NXDOMAIN: no document.
    assert_eq!(next(&mut watch).await.expect("an answer"), None);

    // One record in two character-strings, next to a record that is not a config.
    // Each change is seen at the next resolution: the 1 s TTL's, or a refresh's.
    let (head, tail) = FIRST.split_at(60);
    zone.set_txt(OWNER, &[&["v=spf1 -all"], &[head, tail]], 1)
        .await;
    dns.refresh();
    assert_eq!(next(&mut watch).await.expect("set"), doc(FIRST_CHOSEN));

    zone.set_txt(OWNER, &[&[SECOND]], 1).await;
    dns.refresh();
    assert_eq!(next(&mut watch).await.expect("changed"), doc(SECOND_CHOSEN));

    zone.set_txt(OWNER, &[&[r#"grpc_config=[{"percentage":"ten"}]"#]], 1)
        .await;
    dns.refresh();
    let err = next(&mut watch).await.expect_err("a malformed record");
    assert!(crate_error(&*err).is_decode(), "{err}");
    assert!(err.to_string().contains(OWNER), "{err}");

    zone.set_txt(OWNER, &[&["v=spf1 -all"]], 1).await;
    dns.refresh();
    assert_eq!(next(&mut watch).await.expect("no grpc_config"), None);

    zone.set_txt(OWNER, &[&[SECOND]], 1).await;
    dns.refresh();
    assert_eq!(
        next(&mut watch).await.expect("set again"),
        doc(SECOND_CHOSEN)
    );

    zone.remove(OWNER, RecordType::TXT).await;
    dns.refresh();
    assert_eq!(next(&mut watch).await.expect("removed"), None);
}

#[tokio::test]
async fn reports_an_outage_and_yields_the_record_changed_meanwhile() {
    support::trace_init();
    let mut zone = TestZone::start().await;
    zone.set_txt(OWNER, &[&[FIRST]], 1).await;
    let dns = dns(&zone);
    let mut watch = dns.service_config("echo.test.").expect("name");
    assert_eq!(next(&mut watch).await.expect("first"), doc(FIRST_CHOSEN));

    zone.stop().await;
    dns.refresh();
    let err = next(&mut watch).await.expect_err("the nameserver is down");
    let err = crate_error(&*err);
    assert!(err.is_timeout() || err.is_transport(), "{err}");

    zone.set_txt(OWNER, &[&[SECOND]], 1).await;
    zone.restart().await;
    // Failures that differ from the first one may come before the answer.
    let recovered = loop {
        if let Ok(document) = next(&mut watch).await {
            break document;
        }
    };
    assert_eq!(recovered, doc(SECOND_CHOSEN));
}
