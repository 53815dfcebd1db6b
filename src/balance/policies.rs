//! The policies a channel's calls follow (the service config's method table and
//! its retry throttle): fixed when the channel is built, or followed live from a
//! registry ([`ServiceConfigWatch`]), swapped without a lock on the call path.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use tracing::{info, warn};

use super::metrics::ChannelMetrics;
use super::retry::Throttle;
use super::service_config::{Method, Methods, RetryThrottling, ServiceConfig};
use crate::source::ServiceConfigWatch;

/// One service config, ready for calls.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) methods: Option<Methods>,
    pub(crate) throttle: Option<Arc<Throttle>>,
    /// What the throttle was built from: a new document with the same throttling
    /// keeps the throttle and its tokens.
    throttling: Option<RetryThrottling>,
}

impl Live {
    pub(crate) fn new(config: &ServiceConfig, previous: Option<&Live>) -> Self {
        let throttling = config.throttling();
        let throttle = match previous {
            Some(p) if p.throttling == throttling => p.throttle.clone(),
            _ => throttling.map(|t| Arc::new(Throttle::new(t))),
        };
        Live {
            methods: config.methods(),
            throttle,
            throttling,
        }
    }
}

/// The channel's policies.
#[derive(Debug)]
pub(crate) enum Policies {
    /// Set in code, for the channel's life.
    Fixed(Live),
    /// Followed from a registry: each good document replaces the whole table.
    Followed(Arc<ArcSwap<Live>>),
}

impl Policies {
    fn with<R>(&self, f: impl FnOnce(&Live) -> R) -> R {
        match self {
            Policies::Fixed(live) => f(live),
            Policies::Followed(swap) => f(&swap.load()),
        }
    }

    /// The policies for a call to `path`, if any applies.
    pub(crate) fn method(&self, path: &str) -> Option<Arc<Method>> {
        self.with(|live| live.methods.as_ref()?.lookup(path).cloned())
    }

    /// Runs `f` on the channel's retry throttle, if it has one.
    pub(crate) fn throttle<R>(&self, f: impl FnOnce(&Throttle) -> R) -> Option<R> {
        self.with(|live| live.throttle.as_deref().map(f))
    }
}

/// What the follower of a channel's service config needs.
pub(crate) struct Follower {
    pub(crate) watch: ServiceConfigWatch,
    /// The channel's policies; gone when the channel is.
    pub(crate) policies: Weak<ArcSwap<Live>>,
    /// The config the channel was built with.
    pub(crate) base: ServiceConfig,
    pub(crate) service: Arc<str>,
    pub(crate) metrics: Arc<ChannelMetrics>,
}

/// Follows the watch until it ends or the channel is dropped: each good document
/// becomes the channel's policies; a bad one is refused (the last good stays, with
/// a warning and the metric); an absent one brings back the config the channel was
/// built with; a failed read changes nothing.
pub(crate) async fn follow(follower: Follower) {
    let Follower {
        mut watch,
        policies,
        base,
        service,
        metrics,
    } = follower;
    while let Some(update) = watch.next().await {
        let Some(swap) = policies.upgrade() else {
            return;
        };
        let origin = watch.origin();
        let outcome = match update {
            Ok(Some(document)) => match ServiceConfig::from_json(&document) {
                Ok(config) => {
                    let current = swap.load_full();
                    swap.store(Arc::new(Live::new(&config, Some(&current))));
                    info!(service = %service, origin, "service config applied");
                    "applied"
                }
                Err(e) => {
                    warn!(
                        service = %service,
                        origin,
                        error = %e,
                        "service config refused; keeping the last good one"
                    );
                    "refused"
                }
            },
            Ok(None) => {
                let current = swap.load_full();
                swap.store(Arc::new(Live::new(&base, Some(&current))));
                info!(service = %service, origin, "no service config; using the channel's own");
                "absent"
            }
            Err(e) => {
                warn!(
                    service = %service,
                    origin,
                    error = %e,
                    "service config could not be read; keeping the current one"
                );
                "unreadable"
            }
        };
        metrics.service_config(outcome);
    }
}

#[cfg(test)]
#[path = "policies_tests.rs"]
mod tests;
