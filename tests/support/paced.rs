//! A paced load: 200 requests/s through a balanced channel, each answer logged with
//! the time its request was sent and the instance that served it.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

/// One answer: when the request was sent, and which instance answered or the code.
pub type Answer = (Instant, Result<String, tonic::Code>);

pub struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Answer>>>,
    task: tokio::task::JoinHandle<()>,
}

/// 200 requests/s, each on its own task so a slow answer never delays the next send.
pub fn start_load(channel: BalancedChannel) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::<Mutex<Vec<Answer>>>::default();
    let (stop2, log2) = (stop.clone(), log.clone());
    let task = tokio::spawn(async move {
        let mut calls = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while !stop2.load(Ordering::Relaxed) {
            tick.tick().await;
            let (channel, log) = (channel.clone(), log2.clone());
            calls.spawn(async move {
                let sent = Instant::now();
                let reply = EchoClient::new(channel).echo(EchoRequest::default()).await;
                let outcome = reply
                    .map(|r| r.into_inner().instance_id)
                    .map_err(|s| s.code());
                log.lock().unwrap().push((sent, outcome));
            });
        }
        while calls.join_next().await.is_some() {}
    });
    Load { stop, log, task }
}

impl Load {
    /// Answers from instance `id` so far.
    pub fn served_by(&self, id: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|(_, r)| r.as_deref() == Ok(id)).count()
    }

    /// Answers so far.
    pub fn answers(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Stops sending, waits for every request in flight, and returns the log.
    pub async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}

/// When a request answered by `id` was sent.
pub fn sent_to(id: &str, (sent, outcome): &Answer) -> Option<Instant> {
    (outcome.as_deref() == Ok(id)).then_some(*sent)
}

/// Asserts that no request of `log` failed.
pub fn assert_none_failed(log: &[Answer]) {
    let errors: Vec<_> = log.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {errors:?}",
        errors.len(),
        log.len()
    );
}

/// Asserts that no request sent after `left` reached instance `id`.
pub fn assert_none_reached_after(log: &[Answer], id: &str, left: Instant) {
    let late = log
        .iter()
        .filter_map(|a| sent_to(id, a))
        .filter(|sent| *sent > left)
        .count();
    assert_eq!(
        late, 0,
        "requests sent after {id} left the channel reached {id}"
    );
}
