//! The load of the fault suite: callers in a loop through the balanced channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

use super::T;
use crate::support::eventually;

/// Callers in a loop, a short pause between calls, counting answers per instance.
pub struct Load {
    ok: Arc<AtomicU64>,
    /// Calls finished, per caller.
    done: Arc<[AtomicU64]>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: JoinSet<()>,
}

impl Load {
    pub fn start(channel: &BalancedChannel, callers: usize) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let done: Arc<[AtomicU64]> = (0..callers).map(|_| AtomicU64::new(0)).collect();
        let mut tasks = JoinSet::new();
        for caller in 0..callers {
            let mut client = EchoClient::new(channel.clone());
            let (ok, failures, done) = (ok.clone(), failures.clone(), done.clone());
            tasks.spawn(async move {
                loop {
                    match client.echo(EchoRequest::default()).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(status) => {
                            failures.lock().unwrap().push(status.to_string());
                            0
                        }
                    };
                    done[caller].fetch_add(1, Ordering::Relaxed);
                    // Pacing the load, not waiting for a state.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            });
        }
        Load {
            ok,
            done,
            failures,
            tasks,
        }
    }

    /// Waits until every caller has finished a call it started after this point.
    pub async fn settle(&self) {
        let snapshot: Vec<u64> = self
            .done
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .collect();
        eventually(T, "every caller finishes a call", || async {
            (self.done.iter().zip(&snapshot)).all(|(d, s)| d.load(Ordering::Relaxed) >= s + 2)
        })
        .await;
    }

    /// Successful calls so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more calls have succeeded.
    pub async fn wait_for_more(&self, n: u64) {
        let target = self.ok() + n;
        eventually(T, "calls keep succeeding", || async { self.ok() >= target }).await;
    }

    /// Stops the callers; returns the successes and the failures.
    pub async fn stop(&mut self) -> (u64, Vec<String>) {
        self.tasks.abort_all();
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                assert!(e.is_cancelled(), "a caller panicked: {e}");
            }
        }
        (self.ok(), self.failures.lock().unwrap().clone())
    }
}
