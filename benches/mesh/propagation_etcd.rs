//! Scenario 2 through etcd: delete the instance's key → last response.

use std::time::Duration;

use tokio::time::sleep;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::etcd::{Client, Registration};
use tonic_discovery::testkit::EtcdServer;

use crate::common::{self, Pacer, Res};
use crate::load::{OpenLoad, boxed};
use crate::propagation::{GAP, RATE, Results, analyse, count, failed, marker};

pub async fn run(trials: usize) -> Res<(Results, Vec<(String, usize, usize)>)> {
    let etcd = EtcdServer::start().await?;
    let client = Client::connect(etcd.endpoint()).await?;
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    let servers = common::servers("e", 3).await?;
    let reg = |s: &tonic_discovery::testkit::TestEchoServer| {
        Registration::new("prop", s.addr())
            .id(s.service().id())
            .ttl(Duration::from_secs(30))
    };
    let mut handles = Vec::new();
    for s in &servers {
        handles.push(Some(client.register(reg(s)).await?));
    }
    let ours = BalancedChannel::builder("prop").build(client.discovery("prop").build());
    let fed = boxed(tonic_discovery::balance::tonic::balance_channel(
        client.discovery("prop").build(),
        tonic_discovery::balance::tonic::http_endpoint,
    ));
    let ids: Vec<String> = servers
        .iter()
        .map(|s| s.service().id().to_owned())
        .collect();
    common::wait_for(Duration::from_secs(10), "3 ready", || async {
        common::ready(&ours) == 3
    })
    .await?;
    common::until_all_answer(&fed, &ids).await?;
    let timeout = Duration::from_secs(2);
    let loads = [
        OpenLoad::start(boxed(ours.clone()), RATE, timeout),
        OpenLoad::start(fed, RATE, timeout),
    ];
    // Steady state first: the watches' start-up queries used their re-query budget.
    sleep(Duration::from_secs(2)).await;
    let mut markers = Vec::new();
    let mut pace = Pacer::new(GAP);
    for i in 0..trials {
        let (v, id) = (i % 3, ids[i % 3].as_str());
        let handle = handles[v].take().ok_or("handle")?;
        let at = pace.next().await;
        raw.delete(handle.key(), None).await?;
        // Counted, not named: the etcd instance key is the published address.
        let until = count(&ours, 2, false).await?;
        markers.push(marker("delete key", id, at, until));
        pace.next().await;
        let _ = handle.deregister().await;
        handles[v] = Some(client.register(reg(&servers[v])).await?);
        count(&ours, 3, true).await?;
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (name, load) in ["ours (etcd)", "tonic-balance (etcd-fed)"]
        .iter()
        .zip(loads)
    {
        let events = load.finish().await;
        errors.push((name.to_string(), events.len(), failed(&events)));
        out.push((
            name.to_string(),
            "delete key",
            analyse(&events, &markers, "delete key"),
        ));
    }
    drop(handles);
    Ok((out, errors))
}
