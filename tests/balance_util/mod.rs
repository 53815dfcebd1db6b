//! Helpers for the balanced-channel tests: a hand-fed discovery stream and calls.
#![allow(dead_code, unreachable_pub)]

mod scripted;
#[allow(unused_imports)]
pub use scripted::Scripted;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::{BoxError, Instance, InstanceKey};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tower::discover::Change;

pub type Item = Result<Change<InstanceKey, Instance>, BoxError>;

/// A discovery stream the test feeds by hand; it ends when the feeder is dropped.
#[derive(Debug)]
pub struct HandDiscovery(mpsc::UnboundedReceiver<Item>);

impl Stream for HandDiscovery {
    type Item = Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        self.0.poll_recv(cx)
    }
}

/// Feeds a [`HandDiscovery`].
#[derive(Debug, Clone)]
pub struct Feeder(mpsc::UnboundedSender<Item>);

pub fn discovery() -> (Feeder, HandDiscovery) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Feeder(tx), HandDiscovery(rx))
}

pub fn key(id: &str) -> InstanceKey {
    InstanceKey::new("node", id)
}

impl Feeder {
    pub fn insert(&self, server: &TestEchoServer) {
        let id = server.service().id().to_owned();
        let addr = server.addr();
        let instance = Instance::new(key(&id), addr.ip().to_string(), addr.port());
        self.0
            .send(Ok(Change::Insert(key(&id), instance)))
            .expect("worker alive");
    }

    pub fn insert_at(&self, id: &str, addr: std::net::SocketAddr) {
        let instance = Instance::new(key(id), addr.ip().to_string(), addr.port());
        self.0
            .send(Ok(Change::Insert(key(id), instance)))
            .expect("worker alive");
    }

    pub fn insert_instance(&self, instance: Instance) {
        let key = instance.key().clone();
        self.0
            .send(Ok(Change::Insert(key, instance)))
            .expect("worker alive");
    }

    pub fn remove(&self, id: &str) {
        self.0
            .send(Ok(Change::Remove(key(id))))
            .expect("worker alive");
    }

    pub fn error(&self, msg: &str) {
        self.0.send(Err(msg.into())).expect("worker alive");
    }
}

/// One Echo call; returns the serving instance id.
pub async fn call(channel: &BalancedChannel) -> Result<String, tonic::Status> {
    let mut client = EchoClient::new(channel.clone());
    let reply = client
        .echo(EchoRequest {
            message: b"hi".to_vec(),
        })
        .await?;
    Ok(reply.into_inner().instance_id)
}

/// The state of endpoint `id`, if the channel has it.
pub fn state(channel: &BalancedChannel, id: &str) -> Option<EndpointState> {
    channel
        .endpoints()
        .into_iter()
        .find(|e| e.key().id() == id)
        .map(|e| e.state())
}

pub fn all_ready(channel: &BalancedChannel, n: usize) -> bool {
    let eps = channel.endpoints();
    eps.len() == n && eps.iter().all(|e| e.state() == EndpointState::Ready)
}

/// One scripted instance behind the channel `builder` builds, once it is ready.
pub async fn scripted_channel(
    builder: tonic_discovery::balance::BalancedChannelBuilder,
) -> (Scripted, BalancedChannel) {
    let server = Scripted::default();
    let addr = server.serve().await;
    let (feed, disc) = discovery();
    let channel = builder.build(disc).expect("channel");
    feed.insert_at("scripted", addr);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !all_ready(&channel, 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scripted instance was not ready within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The feeder's end would end discovery, which keeps the set: no need to hold it.
    (server, channel)
}
