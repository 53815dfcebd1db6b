//! Scenario 2 through Nacos (a real `rnacos` server): deregister → last response, and
//! register → first response.

use std::time::Duration;

use tokio::time::sleep;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::nacos::{Client, Registration};
use tonic_discovery::testkit::{NacosServer, TestEchoServer};

use crate::common::{self, Pacer, Res};
use crate::load::{OpenLoad, boxed};
use crate::propagation::{GAP, RATE, Results, analyse, count, failed, marker};

pub async fn run(trials: usize) -> Res<(Results, Vec<(String, usize, usize)>)> {
    let server = NacosServer::start().await?;
    let client = Client::builder(server.url())
        .cache_dir(server.scratch_dir("cache"))
        .connect()
        .await?;
    let servers = common::servers("n", 3).await?;
    let reg = |s: &TestEchoServer| Registration::new("prop", s.addr());
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
    sleep(Duration::from_secs(2)).await;
    let mut markers = Vec::new();
    let mut pace = Pacer::new(GAP);
    for i in 0..trials {
        let (v, id) = (i % 3, ids[i % 3].as_str());
        let handle = handles[v].take().ok_or("handle")?;
        let at = pace.next().await;
        handle.deregister().await?;
        // Counted, not named: the Nacos instance id is the address.
        let until = count(&ours, 2, false).await?;
        markers.push(marker("deregister", id, at, until));
        let at = pace.next().await;
        handles[v] = Some(client.register(reg(&servers[v])).await?);
        let until = count(&ours, 3, true).await?;
        markers.push(marker("register", id, at, until));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (name, load) in ["ours (nacos)", "tonic-balance (nacos-fed)"]
        .iter()
        .zip(loads)
    {
        let events = load.finish().await;
        errors.push((name.to_string(), events.len(), failed(&events)));
        for kind in ["deregister", "register"] {
            out.push((name.to_string(), kind, analyse(&events, &markers, kind)));
        }
    }
    drop(handles);
    Ok((out, errors))
}
