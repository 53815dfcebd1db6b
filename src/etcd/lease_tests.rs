use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;

/// A keep-alive stream the test answers by hand: each renewal is counted, answers
/// come from a channel.
struct Fake {
    sent: Arc<AtomicUsize>,
    answers: mpsc::UnboundedReceiver<Option<Result<i64>>>,
}

impl Renewals for Fake {
    async fn send(&mut self) -> Result<()> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn answer(&mut self) -> Option<Result<i64>> {
        match self.answers.recv().await {
            Some(answer) => answer,
            None => std::future::pending().await,
        }
    }
}

fn fake() -> (
    Fake,
    Arc<AtomicUsize>,
    mpsc::UnboundedSender<Option<Result<i64>>>,
) {
    let sent = Arc::new(AtomicUsize::new(0));
    let (tx, answers) = mpsc::unbounded_channel();
    let fake = Fake {
        sent: sent.clone(),
        answers,
    };
    (fake, sent, tx)
}

const LEASE: Lease = Lease {
    id: 1,
    ttl: Duration::from_secs(3),
};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn renews_every_third_of_the_ttl_while_answers_come() {
    let (channel, sent, tx) = fake();
    for _ in 0..30 {
        tx.send(Some(Ok(3))).unwrap();
    }
    let start = Instant::now();
    let renewing = tokio::spawn(async move { renew(channel, LEASE, &metrics()).await });
    // Ten TTLs: a renewal per second, the lease never lost.
    tokio::time::sleep(Duration::from_secs(30) + Duration::from_millis(500)).await;
    assert!(!renewing.is_finished());
    assert_eq!(sent.load(Ordering::SeqCst), 30);
    // Answers are used up: the next renewal goes unanswered and the lease counts as lost.
    let lost = renewing.await.unwrap();
    assert!(lost.is_timeout(), "{lost}");
    assert_eq!(start.elapsed(), Duration::from_secs(31 + 2));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_ttl_of_zero_means_the_lease_is_gone() {
    let (channel, _sent, tx) = fake();
    tx.send(Some(Ok(3))).unwrap();
    tx.send(Some(Ok(0))).unwrap();
    let lost = renew(channel, LEASE, &metrics()).await;
    assert!(lost.is_unavailable(), "{lost}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_broken_or_ended_stream_ends_the_renewals() {
    let (channel, _sent, tx) = fake();
    tx.send(Some(Err(Error::closed("h2 error")))).unwrap();
    assert!(renew(channel, LEASE, &metrics()).await.is_closed());
    let (channel, _sent, tx) = fake();
    tx.send(None).unwrap();
    assert!(renew(channel, LEASE, &metrics()).await.is_closed());
}

#[test]
fn interval_is_a_third_of_the_ttl_with_a_floor() {
    assert_eq!(
        keep_alive_interval(Duration::from_secs(9)),
        Duration::from_secs(3)
    );
    assert_eq!(
        keep_alive_interval(Duration::from_secs(1)),
        Duration::from_millis(500)
    );
}

fn metrics() -> crate::telemetry::RegistrationMetrics {
    crate::telemetry::RegistrationMetrics::new("etcd", "test")
}
