//! The connection's socket as the fault server's HTTP/2 stack sees it: every byte, except
//! the frames of streams held back from it.
//!
//! `h2` puts the highest stream id it has *read* in a GOAWAY's last-stream-id, whether
//! or not the application took the stream up. To send a GOAWAY that refuses streams the
//! client has already sent, those streams must never reach `h2`: this filter parses
//! the frame headers of the incoming byte stream and, once the connection's
//! `goaway_after` allowance is used up, drops every frame of a stream above the last
//! one let through.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Shared;

/// The client connection preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, is passed unread.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// Follows frame boundaries and decides, frame by frame, what `h2` gets to read.
#[derive(Debug)]
struct FrameFilter {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
    deliver_payload: bool,
    /// The highest stream id let through; frames of streams up to it always pass.
    last_admitted: u32,
    admitted: u64,
    holding: Arc<AtomicBool>,
}

// === impl FrameFilter ===

impl FrameFilter {
    fn new(holding: Arc<AtomicBool>) -> Self {
        FrameFilter {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            deliver_payload: false,
            last_admitted: 0,
            admitted: 0,
            holding,
        }
    }

    /// Appends to `out` what `h2` may read of `input`.
    fn push(&mut self, mut input: &[u8], shared: &Shared, out: &mut BytesMut) {
        while !input.is_empty() {
            let n = if self.preface_left > 0 {
                let n = self.preface_left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.preface_left -= n;
                n
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(input.len());
                if self.deliver_payload {
                    out.extend_from_slice(&input[..n]);
                }
                self.payload_left -= n;
                n
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(input.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&input[..n]);
                self.header_len += n;
                if self.header_len == FRAME_HEADER_LEN {
                    self.end_header(shared, out);
                }
                n
            };
            input = &input[n..];
        }
    }

    fn end_header(&mut self, shared: &Shared, out: &mut BytesMut) {
        self.header_len = 0;
        let h = self.header;
        self.payload_left = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.deliver_payload = self.admit(h[3], id, shared);
        if self.deliver_payload {
            out.extend_from_slice(&h);
        }
    }

    /// Whether a frame of type `kind` on stream `id` reaches `h2`.
    fn admit(&mut self, kind: u8, id: u32, shared: &Shared) -> bool {
        if id <= self.last_admitted {
            // The connection (id 0) and streams already let through.
            return true;
        }
        if self.holding.load(Ordering::Relaxed) {
            return false;
        }
        if kind != HEADERS {
            // Not a stream opening (a PRIORITY, or a protocol error `h2` answers).
            return true;
        }
        if self.admitted >= shared.goaway_after() {
            self.holding.store(true, Ordering::Relaxed);
            return false;
        }
        self.admitted += 1;
        self.last_admitted = id;
        true
    }
}

/// A TCP connection read through a [`FrameFilter`]. Its shutdown sends FIN and then
/// reads until the client closes (for at most [`LINGER`]), so that the kernel does not
/// answer unread bytes with a RST that could destroy the GOAWAY before the client
/// reads it.
#[derive(Debug)]
pub(super) struct Gated {
    tcp: TcpStream,
    shared: Arc<Shared>,
    filter: FrameFilter,
    scratch: Box<[u8]>,
    /// Bytes let through and not yet read by `h2`.
    out: BytesMut,
    eof: bool,
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
}

// === impl Gated ===

impl Gated {
    /// `holding` turns true when the first stream is held back.
    pub(super) fn new(tcp: TcpStream, shared: Arc<Shared>, holding: Arc<AtomicBool>) -> Self {
        Gated {
            tcp,
            shared,
            filter: FrameFilter::new(holding),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
            out: BytesMut::new(),
            eof: false,
            linger: None,
        }
    }

    /// Reads and discards until the client closes or [`LINGER`] has passed.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let linger = self
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        if linger.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        loop {
            let mut buf = ReadBuf::new(&mut self.scratch);
            match ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => continue,
                _ => return Poll::Ready(()),
            }
        }
    }
}

impl AsyncRead for Gated {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
            }
            this.filter.push(read.filled(), &this.shared, &mut this.out);
        }
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.tcp).poll_shutdown(cx))?;
        }
        ready!(this.poll_drain(cx));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, id: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len().to_be_bytes();
        let mut f = vec![len[5], len[6], len[7], kind, 0];
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn filter() -> FrameFilter {
        FrameFilter::new(Arc::new(AtomicBool::new(false)))
    }

    #[test]
    fn holds_streams_beyond_the_allowance_whatever_the_segmentation() {
        let shared = Shared::new("t".into());
        shared.set_goaway_after(Some(1));
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let settings = frame(0x4, 0, &[0; 6]);
        let (h1, d1) = (frame(HEADERS, 1, b"h1"), frame(0x0, 1, b"d1"));
        let (h3, d3) = (frame(HEADERS, 3, b"h3"), frame(0x0, 3, b"d3"));
        let ping = frame(0x6, 0, &[7; 8]);
        for f in [&settings, &h1, &h3, &d1, &d3, &ping] {
            input.extend_from_slice(f);
        }
        let mut expected = input[..PREFACE_LEN].to_vec();
        for f in [&settings, &h1, &d1, &ping] {
            expected.extend_from_slice(f);
        }
        for chunk in [1, 2, 7, 9, 10, input.len()] {
            let mut filter = filter();
            let mut out = BytesMut::new();
            input
                .chunks(chunk)
                .for_each(|c| filter.push(c, &shared, &mut out));
            assert_eq!(&out[..], &expected[..], "chunks of {chunk}");
            assert!(filter.holding.load(Ordering::Relaxed));
        }
    }

    #[test]
    fn passes_everything_without_goaway_after() {
        let shared = Shared::new("t".into());
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for id in [1, 3, 5] {
            input.extend_from_slice(&frame(HEADERS, id, b"h"));
        }
        let mut filter = filter();
        let mut out = BytesMut::new();
        filter.push(&input, &shared, &mut out);
        assert_eq!(&out[..], &input[..]);
        assert!(!filter.holding.load(Ordering::Relaxed));
    }
}
