//! HTTP/2 framing at the byte level (RFC 9113 §4.1): frame headers, a cursor that
//! follows frame boundaries in a byte stream however it is segmented, and an injector
//! that writes whole frames between the frames of the stack above.
//!
//! Kept free of anything else in the crate: the test kit's PING-policing server
//! (`testkit/src/policing.rs`, a crate of its own) compiles this same file.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// The client connection preface (RFC 9113 §3.4).
pub(crate) const CLIENT_PREFACE: usize = 24;
pub(crate) const FRAME_HEADER: usize = 9;

pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PING: u8 = 0x6;
// Sent by the test kit's PING-policing server only.
#[allow(dead_code)]
pub(crate) const GOAWAY: u8 = 0x7;
/// The ACK flag of SETTINGS and PING; END_STREAM of DATA and HEADERS.
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_STREAM: u8 = 0x1;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
}

impl Header {
    #[inline]
    pub(crate) fn parse(h: &[u8]) -> Header {
        Header {
            len: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        }
    }

    /// A frame's bytes: this header's kind, flags and stream with `payload`.
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = Vec::with_capacity(FRAME_HEADER + len);
        out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// Follows the frame boundaries of one direction's bytes, whatever their
/// segmentation, and reports each header and payload chunk.
#[derive(Debug, Clone)]
pub(crate) struct FrameCursor {
    preface_left: usize,
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// Payload bytes left in the current frame.
    remaining: usize,
}

impl FrameCursor {
    /// A cursor for bytes that start with `preface` bytes of preface.
    pub(crate) fn new(preface: usize) -> Self {
        FrameCursor {
            preface_left: preface,
            header: [0; FRAME_HEADER],
            header_len: 0,
            remaining: 0,
        }
    }

    /// Whether the bytes so far end exactly between two frames.
    #[inline]
    pub(crate) fn at_boundary(&self) -> bool {
        self.preface_left == 0 && self.header_len == 0 && self.remaining == 0
    }

    /// How many more bytes reach the next boundary, or the end of the current
    /// header (after which the frame's length is known): never 0 off a boundary.
    #[inline]
    pub(crate) fn to_boundary(&self) -> usize {
        if self.preface_left > 0 {
            self.preface_left
        } else if self.header_len > 0 {
            FRAME_HEADER - self.header_len
        } else {
            self.remaining
        }
    }

    /// Feeds the next bytes; `on_header` sees every complete header, `on_payload`
    /// every chunk of payload (with its frame's header).
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_header: impl FnMut(Header),
        mut on_payload: impl FnMut(&[u8]),
    ) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.remaining == 0 {
                let n = (FRAME_HEADER - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER {
                    self.header_len = 0;
                    let header = Header::parse(&self.header);
                    self.remaining = header.len;
                    on_header(header);
                }
                continue;
            }
            let n = self.remaining.min(bytes.len());
            on_payload(&bytes[..n]);
            self.remaining -= n;
            bytes = &bytes[n..];
        }
    }
}

/// Bytes written between the frames of the protocol stack above: queued, started
/// only at a frame boundary, and finished before the stack writes again.
#[derive(Debug)]
pub(crate) struct Injector {
    cursor: FrameCursor,
    frame: Vec<u8>,
    written: usize,
    flush: bool,
}

impl Injector {
    pub(crate) fn new(preface: usize) -> Self {
        Injector {
            cursor: FrameCursor::new(preface),
            frame: Vec::new(),
            written: 0,
            flush: false,
        }
    }

    /// Queues `frame` (a whole frame) to go out at the next boundary.
    pub(crate) fn queue(&mut self, frame: Vec<u8>) {
        if self.frame.is_empty() {
            self.frame = frame;
            self.written = 0;
        }
    }

    /// Drops the frame queued or being written (the connection is failing).
    pub(crate) fn abandon(&mut self) {
        self.frame = Vec::new();
        self.written = 0;
        self.flush = false;
    }

    /// Whether a frame is queued or being written.
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        !self.frame.is_empty()
    }

    /// Writes the queued frame as far as the socket takes it, if it may start or has
    /// started, then flushes it. `Ready(Ok)` when nothing is left to write now.
    pub(crate) fn poll_inject<T: AsyncWrite>(
        &mut self,
        mut io: Pin<&mut T>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending() && (self.written > 0 || self.cursor.at_boundary()) {
            while self.written < self.frame.len() {
                let n = std::task::ready!(io.as_mut().poll_write(cx, &self.frame[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
            }
            self.frame = Vec::new();
            self.written = 0;
            self.flush = true;
        }
        if self.flush {
            std::task::ready!(io.poll_flush(cx))?;
            self.flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// How many of `len` bytes the stack may write now: all of them unless a frame
    /// waits for the next boundary.
    #[inline]
    pub(crate) fn allowance(&self, len: usize) -> usize {
        if self.pending() {
            len.min(self.cursor.to_boundary())
        } else {
            len
        }
    }

    /// The stack wrote `bytes`.
    pub(crate) fn wrote(&mut self, bytes: &[u8], on_header: impl FnMut(Header)) {
        self.cursor.feed(bytes, on_header, |_| {});
    }
}
