//! Feeding discovery into tonic's own balancer, for users who want it.
//!
//! [`BalancedChannel`](super::BalancedChannel) is the recommended channel. tonic's
//! `Channel::balance_channel` keeps sending to instances whose connections fail,
//! applies changes only when a request arrives, balances at random and waits
//! forever when no instance exists; use it only if you depend on its behaviour.

use ::tonic::transport::channel::Change as TonicChange;
use ::tonic::transport::{Channel, Endpoint};
use futures_core::Stream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tower::discover::Change;
use tracing::{Instrument, info, warn};

use crate::{BoxError, Instance, InstanceKey};

/// The capacity of the change queue towards tonic's balancer. tonic drains it only
/// when a request arrives, so forwarding waits while it is full.
const CHANGE_CAPACITY: usize = 1024;

/// A tonic `Channel` balanced by tonic over the instances `discovery` reports, each
/// made into an [`Endpoint`] by `make_endpoint` (see [`http_endpoint`]); the
/// forwarding task is spawned on the current tokio runtime.
///
/// Discovery errors and instances `make_endpoint` rejects are logged and skipped.
/// The forwarding task ends when discovery ends or every clone of the channel is
/// dropped.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn` does.
pub fn balance_channel<D, E, F>(discovery: D, make_endpoint: F) -> Channel
where
    D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Send + Unpin + 'static,
    E: Into<BoxError> + 'static,
    F: FnMut(&Instance) -> Result<Endpoint, BoxError> + Send + 'static,
{
    let (channel, tx) = Channel::balance_channel(CHANGE_CAPACITY);
    tokio::spawn(forward(discovery, make_endpoint, tx).in_current_span());
    channel
}

/// A plaintext HTTP/2 endpoint at the instance's address, with tonic's defaults.
///
/// # Errors
///
/// When the address does not form a valid URI.
pub fn http_endpoint(instance: &Instance) -> Result<Endpoint, BoxError> {
    Ok(Endpoint::from_shared(format!(
        "http://{}",
        instance.authority()
    ))?)
}

async fn forward<D, E, F>(
    mut discovery: D,
    mut make_endpoint: F,
    tx: mpsc::Sender<TonicChange<InstanceKey, Endpoint>>,
) where
    D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Send + Unpin + 'static,
    E: Into<BoxError> + 'static,
    F: FnMut(&Instance) -> Result<Endpoint, BoxError> + Send + 'static,
{
    loop {
        let item = tokio::select! {
            item = discovery.next() => item,
            () = tx.closed() => return,
        };
        // Converted in a sync step so that `E` need not be `Send`.
        let change = match next_change(item, &mut make_endpoint) {
            Next::End => return,
            Next::Skip => continue,
            Next::Send(change) => *change,
        };
        if tx.send(change).await.is_err() {
            return;
        }
    }
}

enum Next {
    End,
    Skip,
    Send(Box<TonicChange<InstanceKey, Endpoint>>),
}

fn next_change<E, F>(item: Option<Result<Change<InstanceKey, Instance>, E>>, make: &mut F) -> Next
where
    E: Into<BoxError>,
    F: FnMut(&Instance) -> Result<Endpoint, BoxError>,
{
    match item {
        None => {
            warn!("discovery ended; tonic keeps the current instances");
            Next::End
        }
        Some(Err(error)) => {
            let error: BoxError = error.into();
            warn!(%error, "discovery error ignored");
            Next::Skip
        }
        Some(Ok(change)) => convert(change, make).map_or(Next::Skip, |c| Next::Send(Box::new(c))),
    }
}

fn convert<F>(
    change: Change<InstanceKey, Instance>,
    make: &mut F,
) -> Option<TonicChange<InstanceKey, Endpoint>>
where
    F: FnMut(&Instance) -> Result<Endpoint, BoxError>,
{
    match change {
        Change::Insert(key, instance) => match make(&instance) {
            Ok(endpoint) => {
                info!(instance = %key, addr = %instance.authority(), "instance inserted");
                Some(TonicChange::Insert(key, endpoint))
            }
            Err(error) => {
                warn!(instance = %key, %error, "instance skipped: no endpoint");
                None
            }
        },
        Change::Remove(key) => {
            info!(instance = %key, "instance removed");
            Some(TonicChange::Remove(key))
        }
    }
}
