//! The balanced channel on an executor of the caller's choosing.

use std::convert::Infallible;
use std::time::Duration;

use tonic::Code;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::testkit::pb::EchoRequest;
use tonic_discovery::testkit::pb::echo_client::EchoClient;
use tonic_discovery::{Instance, InstanceKey};
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
