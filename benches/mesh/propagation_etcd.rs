//! Scenario 2 through etcd: delete the instance's key → last response.

use std::time::Duration;

use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::etcd::{Client, Registration};
use tonic_discovery_testkit::EtcdServer;

use crate::common::{self, Pacer, Res};
use crate::propagation::{Contenders, Errors, GAP, RESTORE, Results, count, marker};

pub async fn run(trials: usize) -> Res<(Results, Errors)> {
    let etcd = EtcdServer::start().await?;
    let client = Client::connect(etcd.endpoint()).await?;
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    let servers = common::servers("e", 3).await?;
    let reg = |s: &tonic_discovery_testkit::TestEchoServer| {
        Registration::new("prop", s.addr())
            .id(s.service().id())
            .ttl(Duration::from_secs(30))
    };
    let mut handles = Vec::new();
    for s in &servers {
        handles.push(Some(client.register(reg(s)).await?));
    }
    let ours = BalancedChannel::builder("prop")
        .build(client.discovery("prop").build())
        .expect("valid balancer settings");
    let fed = common::tonic_fed(client.discovery("prop").build());
    let ids = common::ids(&servers);
    let contenders = Contenders::start(&ours, fed, &ids).await?;
    let mut markers = Vec::new();
    let mut pace = Pacer::new(GAP);
    for i in 0..trials {
        let (v, id) = (i % 3, ids[i % 3].as_str());
        let handle = handles[v].take().ok_or("handle")?;
        let at = pace.next().await;
        raw.delete(handle.key(), None).await?;
        // Counted, not named: the etcd instance key is the published address.
        count(&ours, 2, false).await?;
        markers.push(marker("delete key", id, at));
        let at = pace.next().await;
        let _ = handle.deregister().await;
        handles[v] = Some(client.register(reg(&servers[v])).await?);
        count(&ours, 3, true).await?;
        markers.push(marker(RESTORE, id, at));
    }
    let results = contenders
        .finish(
            ["ours (etcd)", "tonic-balance (etcd-fed)"],
            &["delete key"],
            &markers,
        )
        .await;
    drop(handles);
    Ok(results)
}
