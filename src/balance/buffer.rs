//! How much of the request bodies a channel keeps to send them again (resends,
//! retries, hedges): gRFC A6's per-call and per-channel buffer limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest request body kept for a resend, retry or hedge by default (gRFC A6's
/// suggestion). A larger request is sent once.
pub(crate) const DEFAULT_PER_CALL: usize = 256 * 1024;
/// The most request bytes a channel keeps at once by default, over all its calls
/// (grpc-java's default); a call whose body would pass it is sent once.
pub(crate) const DEFAULT_PER_CHANNEL: usize = 16 * 1024 * 1024;

/// How much of the request bodies a channel keeps for sending again (gRFC A6: a
/// call whose buffered request passes either limit is committed).
#[derive(Debug)]
pub(crate) struct ReplayBuffer {
    per_call: usize,
    per_channel: usize,
    /// Bytes kept now, over the channel's calls.
    in_use: AtomicUsize,
}

impl ReplayBuffer {
    pub(crate) fn new(per_call: usize, per_channel: usize) -> Arc<Self> {
        Arc::new(ReplayBuffer {
            per_call,
            per_channel,
            in_use: AtomicUsize::new(0),
        })
    }

    /// Counts `len` more bytes of a call that kept `kept` so far; false (nothing
    /// counted) when either limit would be passed.
    pub(crate) fn take(&self, kept: usize, len: usize) -> bool {
        if kept.saturating_add(len) > self.per_call {
            return false;
        }
        let before = self.in_use.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) > self.per_channel {
            self.in_use.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn give_back(&self, len: usize) {
        if len > 0 {
            self.in_use.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// Bytes kept now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_keeps_up_to_its_limit_and_the_channel_up_to_its_own() {
        let buffer = ReplayBuffer::new(100, 150);
        assert!(buffer.take(0, 60), "first frame of call A");
        assert!(buffer.take(60, 40), "call A at its limit");
        assert!(!buffer.take(100, 1), "call A past its limit");
        assert_eq!(buffer.in_use(), 100, "a refused frame is not counted");
        assert!(buffer.take(0, 50), "call B within the channel's total");
        assert!(!buffer.take(50, 1), "call B past the channel's total");
        assert_eq!(buffer.in_use(), 150);
        buffer.give_back(100);
        assert!(buffer.take(50, 50), "call A ended: room again");
        assert_eq!(buffer.in_use(), 100);
    }
}
