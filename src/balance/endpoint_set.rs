//! The worker's endpoints: each one's connection state machine, and which of them
//! are ready to take a call.
//!
//! What `tower::ready_cache::ReadyCache` did for the worker, without its costs:
//! every endpoint keeps one waker for its life, which queues the endpoint for the
//! worker's next poll and wakes the worker, so a wake-up polls only the endpoints
//! that asked for it; calling an endpoint allocates nothing (the cache boxed a
//! future and a cancellation channel per call, to re-poll the endpoint in a
//! `FuturesUnordered`; the queue of woken endpoints here is two buffers that keep
//! their capacity); and polling never fails, as an [`Endpoint`]'s readiness
//! does not. Beside the endpoint table ([`Registry`](super::table::Registry)), which
//! holds what callers read (stats, weight, tier, service state), this holds what
//! only the worker touches: the endpoints are inserted into and removed from both
//! together (see the worker's `connect` and `disconnect`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tonic::body::Body;
use tower::Service;

use super::dispatch::EndpointFuture;
use super::endpoint::Endpoint;
use crate::InstanceKey;

/// The endpoints, by key, and the ready ones by position (for uniform draws).
pub(crate) struct EndpointSet {
    slots: Vec<Option<Slot>>,
    /// Free slots, reused by the next inserts.
    free: Vec<usize>,
    by_key: HashMap<InstanceKey, usize>,
    /// The slots of the ready endpoints; each slot knows its position here.
    ready: Vec<usize>,
    woken: Arc<Woken>,
    /// The queue's other buffer: swapped with it at each poll, so that neither
    /// allocates once both have grown to the wake-ups a poll sees.
    spare: Vec<(usize, u64)>,
    /// Counts slot uses, so that a waker of a removed endpoint does not poll
    /// whatever took its slot (it would only be a needless poll).
    generation: u64,
}

struct Slot {
    key: InstanceKey,
    endpoint: Endpoint,
    waker: Arc<SlotWaker>,
    /// The same waker, as a [`Waker`] (made once).
    std_waker: Waker,
    /// Its position in [`EndpointSet::ready`], when ready.
    ready_at: Option<usize>,
}

/// The endpoints woken since the worker last polled them, and the worker to wake.
#[derive(Default)]
struct Woken {
    queue: Mutex<Vec<(usize, u64)>>,
    worker: AtomicWaker,
}

/// One endpoint's waker: queues its slot once until it is polled, and wakes the
/// worker.
struct SlotWaker {
    slot: usize,
    generation: u64,
    queued: AtomicBool,
    woken: Arc<Woken>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// Wakes the worker even when the endpoint is already queued: a call queues the
    /// endpoint without waking anyone (see [`EndpointSet::call_ready_index`]), so a
    /// wake that stopped at the queue could leave it unpolled.
    fn wake_by_ref(self: &Arc<Self>) {
        self.queue();
        self.woken.worker.wake();
    }
}

impl SlotWaker {
    /// Queues the endpoint for the worker's next poll (once until it is polled).
    fn queue(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.woken
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((self.slot, self.generation));
        }
    }
}

// === impl EndpointSet ===

impl Default for EndpointSet {
    fn default() -> Self {
        EndpointSet {
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            ready: Vec::new(),
            woken: Arc::new(Woken::default()),
            spare: Vec::new(),
            generation: 0,
        }
    }
}

impl EndpointSet {
    /// All endpoints, ready or not.
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(crate) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Adds an endpoint (replacing one under the same key); it is polled, and starts
    /// connecting, at the next [`poll_woken`](Self::poll_woken).
    pub(crate) fn push(&mut self, key: InstanceKey, endpoint: Endpoint) {
        self.evict(&key);
        self.generation = self.generation.wrapping_add(1);
        let id = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let waker = Arc::new(SlotWaker {
            slot: id,
            generation: self.generation,
            queued: AtomicBool::new(false),
            woken: self.woken.clone(),
        });
        let std_waker = Waker::from(waker.clone());
        self.slots[id] = Some(Slot {
            key: key.clone(),
            endpoint,
            waker,
            std_waker,
            ready_at: None,
        });
        self.by_key.insert(key, id);
        if let Some(slot) = &self.slots[id] {
            slot.waker.queue();
        }
    }

    /// Removes an endpoint (dropping it closes its connection); whether it was here.
    pub(crate) fn evict(&mut self, key: &InstanceKey) -> bool {
        let Some(id) = self.by_key.remove(key) else {
            return false;
        };
        self.set_ready(id, false);
        self.slots[id] = None;
        self.free.push(id);
        true
    }

    /// The ready endpoint at `index` of the ready set.
    pub(crate) fn get_ready_index(&self, index: usize) -> Option<(&InstanceKey, &Endpoint)> {
        let slot = self.slots.get(*self.ready.get(index)?)?.as_ref()?;
        Some((&slot.key, &slot.endpoint))
    }

    /// The position of the endpoint under `key` in the ready set, if it is ready.
    pub(crate) fn ready_index(&self, key: &InstanceKey) -> Option<usize> {
        self.slot(*self.by_key.get(key)?)?.ready_at
    }

    /// Polls every endpoint woken since it was last polled (an endpoint just added
    /// or called counts as woken). O(woken).
    pub(crate) fn poll_woken(&mut self, cx: &mut Context<'_>) {
        self.woken.worker.register(cx.waker());
        let mut batch = std::mem::take(&mut self.spare);
        std::mem::swap(
            &mut *self
                .woken
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            &mut batch,
        );
        for (id, generation) in batch.drain(..) {
            if self
                .slot(id)
                .is_some_and(|slot| slot.waker.generation == generation)
            {
                self.poll_slot(id);
            }
        }
        self.spare = batch;
    }

    /// Polls the endpoint under `key` now; whether it is ready.
    pub(crate) fn check_ready(&mut self, cx: &mut Context<'_>, key: &InstanceKey) -> bool {
        self.woken.worker.register(cx.waker());
        self.by_key
            .get(key)
            .copied()
            .is_some_and(|id| self.poll_slot(id))
    }

    /// Polls the ready endpoint at `index` now; whether it is still ready (one that
    /// is not leaves the ready set, which moves the last ready endpoint to `index`).
    pub(crate) fn check_ready_index(&mut self, cx: &mut Context<'_>, index: usize) -> bool {
        self.woken.worker.register(cx.waker());
        self.ready
            .get(index)
            .copied()
            .is_some_and(|id| self.poll_slot(id))
    }

    /// Sends `request` on the ready endpoint at `index`. The endpoint leaves the
    /// ready set until its next poll, which the call queues (without waking the
    /// worker, which polls its endpoints before it picks again): its readiness (the
    /// stream slot, the concurrency permit) was used by this call.
    pub(crate) fn call_ready_index(
        &mut self,
        index: usize,
        request: http::Request<Body>,
    ) -> EndpointFuture {
        let Some(&id) = self.ready.get(index) else {
            // Callers take `index` from this set in the same poll.
            return EndpointFuture::failed(format!("no ready endpoint at {index}").into());
        };
        self.set_ready(id, false);
        let Some(slot) = self.slots[id].as_mut() else {
            return EndpointFuture::failed(format!("no endpoint in slot {id}").into());
        };
        let future = slot.endpoint.call(request);
        slot.waker.queue();
        future
    }

    fn slot(&self, id: usize) -> Option<&Slot> {
        self.slots.get(id)?.as_ref()
    }

    fn poll_slot(&mut self, id: usize) -> bool {
        let Some(slot) = self.slots.get_mut(id).and_then(Option::as_mut) else {
            return false;
        };
        // Cleared before the poll: a wake during it queues the endpoint again.
        slot.waker.queued.swap(false, Ordering::AcqRel);
        let mut cx = Context::from_waker(&slot.std_waker);
        // An endpoint's readiness never fails (see `Endpoint`).
        let ready = matches!(slot.endpoint.poll_ready(&mut cx), Poll::Ready(Ok(())));
        self.set_ready(id, ready);
        ready
    }

    fn set_ready(&mut self, id: usize, ready: bool) {
        let Some(slot) = self.slots.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        match (slot.ready_at, ready) {
            (None, true) => {
                slot.ready_at = Some(self.ready.len());
                self.ready.push(id);
            }
            (Some(at), false) => {
                slot.ready_at = None;
                self.ready.swap_remove(at);
                if let Some(&moved) = self.ready.get(at)
                    && let Some(slot) = self.slots[moved].as_mut()
                {
                    slot.ready_at = Some(at);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "endpoint_set_tests.rs"]
mod tests;
