//! Load balancing over discovered instances.
//!
//! [`BalancedChannel`] is a tonic-compatible channel over the instances a discovery
//! stream reports (any `Stream<Item = Result<tower::discover::Change<InstanceKey,
//! Instance>, E>>`, such as the Consul discovery of this crate).
//!
//! ```no_run
//! use std::time::Duration;
//! use futures_util::stream;
//! use tonic_discovery::balance::BalancedChannel;
//! use tonic_discovery::{Instance, InstanceKey};
//! use tower::discover::Change;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Any discovery stream; Consul's `Discovery` has this shape.
//! let key = InstanceKey::new("node-1", "echo-1");
//! let instance = Instance::new(key.clone(), "127.0.0.1", 50051);
//! let discovery = stream::iter([Ok::<_, std::convert::Infallible>(Change::Insert(key, instance))]);
//!
//! let channel = BalancedChannel::builder("echo")
//!     .connect_timeout(Duration::from_secs(1))
//!     .timeout(Duration::from_secs(5))
//!     .failfast_timeout(Duration::from_secs(3))
//!     .build(discovery)
//!     .expect("valid settings");
//! // let client = EchoClient::new(channel.clone());
//! for endpoint in channel.endpoints() {
//!     println!("{} {} {:?}", endpoint.key(), endpoint.address(), endpoint.state());
//! }
//! # }
//! ```
//!
//! # Internals
//!
//! One worker task owns the discovery stream, the endpoints and the bounded request
//! queue, and polls all three on every wake-up, so discovery changes apply while no
//! request is in flight: an inserted instance connects at once, a removed one's
//! connection closes once its requests in flight finish. The endpoints in service are
//! published in one table that callers read: a call that finds one with a free stream
//! reserves the stream and is sent from the caller's task, without the worker. Calls
//! go through the worker when none does, while calls already wait there (they are
//! served first), and while a probe is due (it takes the next call, whatever the
//! number of endpoints).
//!
//! Each endpoint is one HTTP/2 connection with truthful readiness: it is ready only
//! while its connection is up, failure accrual has not ejected it, a stream fits under
//! the server's `SETTINGS_MAX_CONCURRENT_STREAMS` and (with
//! [`BalancedChannelBuilder::health_check`]) the server's health service says it
//! serves. A failed connect or a broken connection sends it to reconnect with
//! jittered backoff, out of the ready set; when a connection closes the worker learns
//! of it at once, even while idle. HTTP/2 keep-alive (on by default) declares a frozen
//! instance's connection dead, with PINGs kept within the PING policing of gRPC
//! servers (see [`BalancedChannelBuilder::http2_keep_alive_interval`]). Endpoints
//! never fail, so a dead instance cannot poison the balancer.
//!
//! Requests go to the less loaded of two ready endpoints picked at random (power of
//! two choices) under Peak-EWMA load, so slow instances get less traffic. A newly
//! inserted instance starts from the median estimate of the ready ones, so it
//! competes at once (see [`LoadMetric`]). With no endpoint in service (connected,
//! not ejected, serving) a request waits at most the fail-fast timeout, then fails
//! with `Unavailable` naming the service; one that waits only because every endpoint
//! is at its stream or concurrency limit waits for a stream, within the request
//! timeout. Requests waiting for the worker are served in order, before later
//! callers take a freed stream. A request stops counting towards its
//! endpoint's load when the response headers arrive, so long streaming responses
//! are not counted while they stream.
//!
//! # Gray failures
//!
//! Every call's outcome is classified where the call completes: the gRPC status of a
//! trailers-only answer is read from its headers, any other from the trailers at the
//! end of the body, and a broken stream is a transport error (see [`FailureAccrual`]).
//! Failures raise the endpoint's cost at once (never lower it, as a fast error would
//! under plain Peak-EWMA) and feed two detectors; one that trips asks the worker,
//! which ejects the endpoint unless the capacity guard forbids it. An ejected
//! endpoint returns through a single probe call. A call the server never processed
//! (refused stream, GOAWAY, connection closed at dispatch) comes back to the worker
//! and goes to another endpoint, within a [`RetryBudget`].
//!
//! Discovery errors are logged and ignored; when discovery ends the set is frozen.
//!
//! [`tonic_balancer::balance_channel`] feeds the same discovery
//! into tonic's own balancer instead, for users who want that.

mod accrual;
pub(crate) mod attempts;
mod buffer;
mod builder;
mod call;
mod channel;
mod config;
mod connect;
mod connector;
mod direct;
mod dispatch;
mod endpoint;
mod endpoint_set;
mod failfast;
mod fenwick;
mod frames;
mod future;
#[cfg(feature = "health")]
mod health;
mod hedge;
mod info;
mod keepalive;
mod latency;
mod load;
mod metrics;
mod policies;
pub mod policy;
mod retry;
mod send;
mod service_config;
mod shared;
mod stats;
mod subset;
mod table;
#[cfg(feature = "tls-ring")]
mod tls;
pub mod tonic_balancer;
/// Frame tracking on the connection's bytes (also used by the test kit's servers).
mod wire;
mod worker;

pub use accrual::FailureAccrual;
pub use attempts::AttemptStats;
pub use builder::BalancedChannelBuilder;
pub use channel::BalancedChannel;
pub use config::LoadMetric;
pub use future::ResponseFuture;
pub use info::{EndpointInfo, EndpointState};
pub use policy::{TrafficPolicy, ZoneRouting};
pub use retry::RetryBudget;
pub use service_config::{
    HedgingPolicy, MethodConfig, MethodName, RetryPolicy, RetryThrottling, ServiceConfig,
};
pub use subset::{Coordinate, Select, Subset};
#[cfg(feature = "tls-ring")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls-ring")))]
pub use tls::TlsConfig;
