//! Behaviours that need `ConsulDev`'s own controls: check statuses other than
//! passing and critical, spurious wake-ups, index resets, fault rules and ACLs.

use consul_dev::{Fault, FaultRule};

use super::*;

#[tokio::test]
async fn dev_only_passing_instances_appear_and_checks_move_them() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &["v1"]).await;
    dev.register("b", 7002, &["v1", "canary"]).await;
    dev.check("b", "warning");
    let client = dev.client(None);
    let mut all = discovery(&client, "echo");
    let mut canary = client.discovery("echo").tag("canary").wait(WAIT).build();
    assert_eq!(
        changes(&mut all, 1).await,
        ["+a@7001"],
        "warning is not passing"
    );

    dev.check("b", "passing");
    assert_eq!(changes(&mut all, 1).await, ["+b@7002"]);
    assert_eq!(changes(&mut canary, 1).await, ["+b@7002"]);
    dev.check("a", "critical");
    assert_eq!(changes(&mut all, 1).await, ["-a"]);
    dev.deregister("b").await;
    assert_eq!(changes(&mut all, 1).await, ["-b"]);
    assert_eq!(changes(&mut canary, 1).await, ["-b"]);
    let index = dev.dev.index();
    eventually(T, "the last answer is in", || async {
        // The untagged watch read again on the last index.
        dev.reads_on(index)
            .iter()
            .any(|r| !r.uri().query().unwrap_or("").contains("tag="))
    })
    .await;
    assert!(all.state().instances().is_empty() && no_change_ready(&mut all));
}

#[tokio::test]
async fn dev_spurious_wakeups_emit_nothing() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let mut d = discovery(&dev.client(None), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);
    dev.parked().await;
    let before = dev.dev.index();
    dev.dev.faults().spurious_wakeup();
    assert!(dev.dev.index() > before);
    dev.parked().await;
    assert!(
        no_change_ready(&mut d),
        "an unchanged snapshot yields nothing"
    );
}

#[tokio::test]
async fn dev_index_reset_resyncs() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let mut d = discovery(&dev.client(None), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);
    dev.parked().await;

    dev.dev.forget_all(); // an agent restarted without state…
    dev.dev.faults().reset_index(1); // …from an older snapshot
    assert_eq!(changes(&mut d, 1).await, ["-a"]);
    dev.register("b", 7002, &[]).await;
    assert_eq!(changes(&mut d, 1).await, ["+b@7002"]);
}

#[tokio::test]
async fn dev_outage_keeps_the_set_and_recovers() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let mut d = discovery(&dev.client(None), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);

    let faults = dev.dev.faults();
    let no_leader = faults.add(FaultRule::new(Fault::NoLeader).path_prefix("/v1/health/"));
    dev.register("b", 7002, &[]).await;
    eventually(T, "failures are counted", || async {
        d.state().consecutive_failures() >= 2
    })
    .await;
    assert!(
        d.state()
            .last_error()
            .unwrap()
            .contains("No cluster leader")
    );
    assert!(no_change_ready(&mut d), "an outage yields nothing");
    assert_eq!(ids(&d).len(), 1);

    faults.remove(no_leader);
    faults.add(
        FaultRule::new(Fault::MalformedJson)
            .path_prefix("/v1/health/")
            .times(1),
    );
    assert_eq!(changes(&mut d, 1).await, ["+b@7002"]);
    eventually(T, "the error clears", || async {
        d.state().last_error().is_none()
    })
    .await;
}

#[tokio::test]
async fn dev_acl_token_goes_in_the_header() {
    support::trace_init();
    let dev = Dev::with_token(Some("s3cr3t")).await;
    dev.register_as("echo", "a", 7001, &[], Some("s3cr3t"))
        .await;
    let mut d = discovery(&dev.client(Some("s3cr3t")), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);

    let denied = discovery(&dev.client(None), "echo");
    eventually(T, "a request without token is refused", || async {
        denied
            .state()
            .last_error()
            .is_some_and(|e| e.contains("403"))
    })
    .await;
    assert!(!denied.state().is_synced());
}
