//! A three-member etcd cluster: the discovery follows a leader failover.
#![cfg(feature = "etcd")]

#[path = "support/etcd.rs"]
mod etcd_support;
mod support;

use std::time::Duration;

use etcd_support::{Seen, go_value, matches_etcd, raw_at};
use support::{eventually, trace_init};
use tonic_discovery::etcd::Client;
use tonic_discovery_testkit::EtcdCluster;

/// What we want to test: updates written while the leader dies and a new one is
/// elected all reach the discovery (the watch may sit on the dead member and must be
/// rebuilt from the last applied revision on another).
#[tokio::test]
async fn killing_the_leader_loses_no_update() {
    trace_init();
    let mut cluster = EtcdCluster::start(3).await.unwrap();
    let client = Client::builder(cluster.endpoints())
        .keep_alive(Duration::from_secs(5), Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let seen = Seen::follow(client.discovery("svc").build());

    for n in 0..40u16 {
        if n == 10 {
            let leader = cluster.leader().await.unwrap();
            cluster.member(leader).kill().await;
        }
        let key = format!("svc/k{}", n % 15);
        let value = go_value(&format!("10.0.0.1:{}", 1000 + n));
        let args: Vec<&str> = if n % 4 == 3 {
            vec!["del", &key]
        } else {
            vec!["put", &key, &value]
        };
        // Puts and deletes are idempotent, so a write whose answer was lost is retried.
        eventually(Duration::from_secs(20), "the write to succeed", || async {
            cluster.etcdctl(&args).await.is_ok()
        })
        .await;
    }

    let raw = raw_at(&cluster.endpoints()).await;
    eventually(
        Duration::from_secs(30),
        "the discovered set to equal etcd's",
        || async { !seen.keys().is_empty() && matches_etcd(&seen, &raw, "svc/").await },
    )
    .await;
    seen.assert_clean();
}
