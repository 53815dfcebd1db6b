//! Following etcd from a revision, the wire half shared by discovery's prefix watch
//! ([`watch`](super::watch)) and the service-config key watch ([`config`](super::config)):
//! a read that says at which revision it was taken, a watch opened from a given
//! revision, and its responses reduced to the [`Step`]s a follower acts on.
//!
//! What to do with each step (resume, read again, yield) is the follower's.

use etcd_client::{GetOptions, WatchOptions, WatchResponse, WatchStream};

use super::client::{Client, map_error};
use super::state::Event;
use crate::error::{Error, Result};

/// What a read or a watch covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// The one key named.
    Key,
    /// Every key that starts with the string named.
    Prefix,
}

/// A read: the revision it was taken at and the keys with their values.
#[derive(Debug)]
pub(super) struct Read {
    pub(super) revision: i64,
    pub(super) kvs: Vec<(String, Vec<u8>)>,
}

/// What one watch response means to a follower.
#[derive(Debug)]
pub(super) enum Step {
    /// The watch is open: etcd answers again.
    Created,
    /// Nothing changed up to this revision (a progress notification).
    Progress(i64),
    /// Changes, in revision order.
    Events(Vec<Event>),
    /// The start revision was compacted (etcd's compact revision): read again.
    Compacted(i64),
    /// The stream broke or etcd cancelled the watch for another reason.
    Broken(Error),
}

/// Reads `key` (or the keys under it) under the client's request timeout.
pub(super) async fn read(client: &Client, key: &str, scope: Scope) -> Result<Read> {
    let options = (scope == Scope::Prefix).then(|| GetOptions::new().with_prefix());
    let mut etcd = client.etcd();
    let resp = client.call("get", etcd.get(key, options)).await?;
    let revision = resp
        .header()
        .map(|h| h.revision())
        .ok_or_else(|| Error::decode("etcd get answered without a header", "no header"))?;
    let kvs = resp.kvs().iter().map(|kv| {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        (key, kv.value().to_vec())
    });
    Ok(Read {
        revision,
        kvs: kvs.collect(),
    })
}

/// Opens a watch of `key` (or the keys under it) from revision `from`, with progress
/// notifications, under the client's request timeout.
pub(super) async fn open(
    client: &Client,
    key: &str,
    scope: Scope,
    from: i64,
) -> Result<WatchStream> {
    let mut options = WatchOptions::new()
        .with_start_revision(from)
        .with_progress_notify();
    if scope == Scope::Prefix {
        options = options.with_prefix();
    }
    let mut etcd = client.etcd();
    client.call("watch", etcd.watch(key, Some(options))).await
}

/// Waits for the next response that means something to a follower. A stream that
/// ends or fails is [`Step::Broken`]; it is of no further use.
pub(super) async fn next(stream: &mut WatchStream) -> Step {
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return Step::Broken(Error::closed("etcd ended the watch stream")),
            Err(e) => return Step::Broken(map_error("watch stream", e)),
        };
        if let Some(step) = step(&resp) {
            return step;
        }
    }
}

/// What `resp` means; `None` for a progress notification without a header.
fn step(resp: &WatchResponse) -> Option<Step> {
    if resp.compact_revision() != 0 {
        return Some(Step::Compacted(resp.compact_revision()));
    }
    if resp.canceled() {
        let reason = format!("etcd canceled the watch: {}", resp.cancel_reason());
        return Some(Step::Broken(Error::closed(reason)));
    }
    if resp.created() {
        return Some(Step::Created);
    }
    if resp.events().is_empty() {
        return resp.header().map(|h| Step::Progress(h.revision()));
    }
    Some(Step::Events(events(resp)))
}

/// Converts a response's events. A deleted key comes as a tombstone whose version is 0;
/// a put always has version ≥ 1. (etcd-client's `event_type()` panics on an unknown
/// type, so the version tells them apart.)
fn events(resp: &WatchResponse) -> Vec<Event> {
    resp.events()
        .iter()
        .filter_map(|event| event.kv())
        .map(|kv| {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let mod_revision = kv.mod_revision();
            if kv.version() == 0 {
                Event::Delete { key, mod_revision }
            } else {
                Event::Put {
                    key,
                    mod_revision,
                    value: kv.value().to_vec(),
                }
            }
        })
        .collect()
}
