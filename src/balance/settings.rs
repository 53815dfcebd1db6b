//! Reads the server's `SETTINGS_MAX_CONCURRENT_STREAMS` off the wire.
//!
//! hyper's HTTP/2 client neither exposes the server's stream limit on `SendRequest`
//! nor makes `poll_ready` wait for it: requests above the limit queue on the
//! connection, unbounded. The balancer needs the limit to take an endpoint at its
//! limit out of the ready set, so the connection's read side is watched: the frames
//! a server sends are a plain sequence of 9-byte headers and payloads (RFC 9113 §4.1),
//! and only the payloads of SETTINGS frames on stream 0 are read.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// Where the limit goes: called with the server's `MAX_CONCURRENT_STREAMS` (`u32::MAX`
/// when its first SETTINGS frame sets none).
pub(crate) type OnLimit = Arc<dyn Fn(u32) + Send + Sync>;

/// Follows the frame boundaries of a server's byte stream and publishes every
/// `MAX_CONCURRENT_STREAMS` value it announces.
pub(crate) struct SettingsReader {
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// Payload bytes left in the current frame.
    remaining: usize,
    /// Whether the current frame is a SETTINGS frame (not an ACK) on stream 0.
    in_settings: bool,
    entry: [u8; 6],
    entry_len: usize,
    /// Whether a SETTINGS frame has been seen (until then the limit is unknown).
    seen: bool,
    on_limit: OnLimit,
}

impl fmt::Debug for SettingsReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SettingsReader")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

// === impl SettingsReader ===

impl SettingsReader {
    pub(crate) fn new(on_limit: OnLimit) -> Self {
        SettingsReader {
            header: [0; FRAME_HEADER],
            header_len: 0,
            remaining: 0,
            in_settings: false,
            entry: [0; 6],
            entry_len: 0,
            seen: false,
            on_limit,
        }
    }

    /// Feeds the next bytes read from the server.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining == 0 && self.header_len < FRAME_HEADER {
                let n = (FRAME_HEADER - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER {
                    self.start_frame();
                }
                continue;
            }
            let n = self.remaining.min(bytes.len());
            if self.in_settings {
                self.settings_payload(&bytes[..n]);
            }
            self.remaining -= n;
            bytes = &bytes[n..];
            if self.remaining == 0 {
                self.header_len = 0;
            }
        }
    }

    fn start_frame(&mut self) {
        let h = &self.header;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.in_settings = h[3] == SETTINGS && h[4] & ACK == 0 && stream == 0;
        if self.in_settings && !self.seen {
            // The server's preface: no limit unless this frame sets one.
            self.seen = true;
            (self.on_limit)(u32::MAX);
        }
        self.entry_len = 0;
        self.remaining = len;
        if len == 0 {
            self.header_len = 0;
        }
    }

    fn settings_payload(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = (6 - self.entry_len).min(bytes.len());
            self.entry[self.entry_len..self.entry_len + n].copy_from_slice(&bytes[..n]);
            self.entry_len += n;
            bytes = &bytes[n..];
            if self.entry_len == 6 {
                self.entry_len = 0;
                let e = &self.entry;
                let id = u16::from_be_bytes([e[0], e[1]]);
                if id == MAX_CONCURRENT_STREAMS {
                    let value = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    (self.on_limit)(value);
                }
            }
        }
    }
}

pin_project! {
    /// A connection whose read side goes through a [`SettingsReader`].
    #[derive(Debug)]
    pub(crate) struct WatchSettings<T> {
        #[pin]
        io: T,
        reader: SettingsReader,
    }
}

impl<T> WatchSettings<T> {
    pub(crate) fn new(io: T, on_limit: OnLimit) -> Self {
        WatchSettings {
            io,
            reader: SettingsReader::new(on_limit),
        }
    }
}

impl<T: AsyncRead> AsyncRead for WatchSettings<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            this.reader.feed(&buf.filled()[before..]);
        }
        poll
    }
}

impl<T: AsyncWrite> AsyncWrite for WatchSettings<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A reader publishing into an atomic that starts at 0 (unknown).
    fn reader() -> (SettingsReader, Arc<AtomicU32>) {
        let max = Arc::new(AtomicU32::new(0));
        let sink = max.clone();
        let on_limit: OnLimit = Arc::new(move |v| sink.store(v, Ordering::Relaxed));
        (SettingsReader::new(on_limit), max)
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn setting(id: u16, value: u32) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&value.to_be_bytes());
        out
    }

    /// A server's first bytes: SETTINGS (window size, then max streams 7), a
    /// WINDOW_UPDATE, a SETTINGS ACK carrying junk, HEADERS and DATA on stream 1
    /// whose payloads look like SETTINGS entries, then SETTINGS lowering it to 3.
    fn stream() -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut first = setting(0x4, 65_535);
        first.extend(setting(MAX_CONCURRENT_STREAMS, 7));
        bytes.extend(frame(SETTINGS, 0, 0, &first));
        bytes.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
        bytes.extend(frame(SETTINGS, ACK, 0, &[]));
        bytes.extend(frame(0x1, 0x4, 1, &setting(MAX_CONCURRENT_STREAMS, 999)));
        bytes.extend(frame(0x0, 0x1, 1, &setting(MAX_CONCURRENT_STREAMS, 999)));
        bytes.extend(frame(SETTINGS, 0, 0, &setting(MAX_CONCURRENT_STREAMS, 3)));
        bytes
    }

    #[test]
    fn reads_the_limit_from_settings_frames_only() {
        let (mut reader, max) = reader();
        let bytes = stream();
        let first_settings_end = FRAME_HEADER + 12;
        reader.feed(&bytes[..first_settings_end]);
        assert_eq!(max.load(Ordering::Relaxed), 7);
        reader.feed(&bytes[first_settings_end..]);
        assert_eq!(max.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_first_settings_frame_without_a_limit_means_none() {
        let (mut reader, max) = reader();
        reader.feed(&frame(SETTINGS, 0, 0, &setting(0x4, 65_535)));
        assert_eq!(max.load(Ordering::Relaxed), u32::MAX);
    }

    proptest! {
        #[test]
        fn any_split_of_the_byte_stream_reads_the_same(cuts in prop::collection::vec(0usize..200, 0..20)) {
            let bytes = stream();
            let (mut reader, max) = reader();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                reader.feed(&bytes[at..cut]);
                at = cut;
            }
            prop_assert_eq!(max.load(Ordering::Relaxed), 3);
        }
    }
}
