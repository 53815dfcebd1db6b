//! Scenario 2 through Nacos (a real `rnacos` server): deregister → last response, and
//! register → first response.

use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::nacos::{Client, Registration};
use tonic_discovery_testkit::{NacosServer, TestEchoServer};

use crate::common::{self, Pacer, Res};
use crate::propagation::{Contenders, Errors, GAP, Results, count, marker};

pub async fn run(trials: usize) -> Res<(Results, Errors)> {
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
        handle.deregister().await?;
        // Counted, not named: the Nacos instance id is the address.
        count(&ours, 2, false).await?;
        markers.push(marker("deregister", id, at));
        let at = pace.next().await;
        handles[v] = Some(client.register(reg(&servers[v])).await?);
        count(&ours, 3, true).await?;
        markers.push(marker("register", id, at));
    }
    let results = contenders
        .finish(
            ["ours (nacos)", "tonic-balance (nacos-fed)"],
            &["deregister", "register"],
            &markers,
        )
        .await;
    drop(handles);
    Ok(results)
}
