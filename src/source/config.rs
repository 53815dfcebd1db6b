//! Service config documents delivered by a registry: the stream a
//! [`BalancedChannel`](crate::balance::BalancedChannel) follows to apply retry and
//! hedging policies without a restart.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::error::BoxError;

/// What a registry holds for a service's config, each time it changes.
///
/// - `Ok(Some(document))`: the gRPC service config JSON now stored (a channel
///   parses it; one it cannot parse keeps the last good config);
/// - `Ok(None)`: no document (the key was deleted or never set): the channel goes
///   back to the config it was built with;
/// - `Err(error)`: the registry could not be read; the watch retries on its own
///   and the channel keeps what it has. Any error type (the crate's own
///   [`Error`](crate::Error) included) converts with `.into()`.
pub type ConfigUpdate = Result<Option<String>, BoxError>;

/// A live service config from a registry: a stream of [`ConfigUpdate`]s, one per
/// change (an answer that changed nothing yields nothing). It never ends on its own;
/// dropping it stops the watch.
///
/// Built by the registries' clients (Consul's `Client::service_config`, etcd's
/// `Client::service_config`, `source::Dns::service_config`) or from any stream of
/// your own with [`ServiceConfigWatch::new`]; handed to
/// [`BalancedChannelBuilder::service_config_watch`](crate::balance::BalancedChannelBuilder::service_config_watch).
pub struct ServiceConfigWatch {
    /// Where the documents come from, for logs: `consul kv service-config/echo`.
    origin: String,
    inner: Pin<Box<dyn Stream<Item = ConfigUpdate> + Send>>,
}

impl ServiceConfigWatch {
    /// A watch over `updates`; `origin` names where they come from in logs.
    pub fn new<S>(origin: impl Into<String>, updates: S) -> Self
    where
        S: Stream<Item = ConfigUpdate> + Send + 'static,
    {
        ServiceConfigWatch {
            origin: origin.into(),
            inner: Box::pin(updates),
        }
    }

    /// Where the documents come from (`consul kv service-config/echo`).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl Stream for ServiceConfigWatch {
    type Item = ConfigUpdate;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConfigUpdate>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for ServiceConfigWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfigWatch")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}
