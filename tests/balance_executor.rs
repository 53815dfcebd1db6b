//! The balanced channel on an executor of the caller's choosing.

use std::convert::Infallible;
use std::time::Duration;

use tonic::Code;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::{Instance, InstanceKey};
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tower::discover::Change;

#[test]
fn build_with_worker_needs_no_runtime() {
    let discovery =
        futures_util::stream::pending::<Result<Change<InstanceKey, Instance>, Infallible>>();
    // Built outside any runtime: nothing may touch tokio's timer or reactor yet.
    let (channel, worker) = BalancedChannel::builder("echo")
        .failfast_timeout(Duration::from_millis(20))
        .build_with_worker(discovery)
        .expect("valid balancer settings");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = runtime.block_on(async move {
        tokio::spawn(worker);
        EchoClient::new(channel)
            .echo(EchoRequest { message: vec![] })
            .await
            .expect_err("no instance")
    });
    assert_eq!(status.code(), Code::Unavailable, "{status}");
}

/// A waker that counts its wakes.
struct Counting(std::sync::atomic::AtomicUsize);

impl futures_util::task::ArcWake for Counting {
    fn wake_by_ref(arc_self: &std::sync::Arc<Self>) {
        arc_self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_fleet_of_changes_is_applied_in_batches_between_which_the_worker_yields() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll};

    // 1,000 instances ready at once, at an address nothing listens on (they back off).
    let changes = (0..1000).map(|i| {
        let key = InstanceKey::new("n", format!("i{i}"));
        Ok::<_, Infallible>(Change::Insert(
            key.clone(),
            Instance::new(key, "127.0.0.1", 1),
        ))
    });
    let discovery = futures_util::StreamExt::chain(
        futures_util::stream::iter(changes),
        futures_util::stream::pending(),
    );
    let (channel, worker) = BalancedChannel::builder("fleet")
        .build_with_worker(discovery)
        .expect("valid balancer settings");
    let mut worker = Box::pin(worker);
    let wakes = Arc::new(Counting(std::sync::atomic::AtomicUsize::new(0)));
    let waker = futures_util::task::waker(wakes.clone());
    let mut cx = Context::from_waker(&waker);

    assert!(worker.as_mut().poll(&mut cx).is_pending());
    let first = channel.endpoints().len();
    assert!(
        first > 0 && first < 1000,
        "one poll applied a batch, not all: {first}"
    );
    assert!(
        wakes.0.load(Ordering::SeqCst) >= 1,
        "the worker woke itself to go on"
    );
    let mut polls = 1;
    while channel.endpoints().len() < 1000 {
        assert!(polls < 100, "the batches end");
        assert!(matches!(worker.as_mut().poll(&mut cx), Poll::Pending));
        polls += 1;
    }
    assert!(
        polls >= 1000 / first,
        "{polls} polls of at most {first} changes"
    );
}
