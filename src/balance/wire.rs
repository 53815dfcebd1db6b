//! The balancer's view of one HTTP/2 connection's bytes: the server's stream limit
//! and the keep-alive PINGs.
//!
//! hyper's HTTP/2 client neither exposes the server's stream limit on `SendRequest`
//! nor makes `poll_ready` wait for it, and its keep-alive PINGs at a fixed interval,
//! which gRPC servers' PING policing punishes on long silent calls (see
//! [`keepalive`](super::keepalive)). So [`Wire`] sits between hyper and the socket
//! (above TLS): the frames of HTTP/2 are a plain sequence of 9-byte headers and
//! payloads (RFC 9113 §4.1), so it follows frame boundaries both ways, reads the
//! `MAX_CONCURRENT_STREAMS` of the server's SETTINGS, writes its own PINGs between
//! hyper's frames and takes their answers out of what hyper reads. hyper's own
//! keep-alive stays off.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::frames::{
    ACK, CLIENT_PREFACE, DATA, END_STREAM, FRAME_HEADER, HEADERS, Header, Injector, PING,
    RST_STREAM, SETTINGS,
};
use super::keepalive::{Heard, KeepAlive, KeepAliveConfig};

const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// The payload of the balancer's PINGs (`h2`'s own use other payloads).
const PING_PAYLOAD: [u8; 8] = *b"tdkalive";

/// The largest run of bytes held back undecided: a PING ACK frame but its last byte.
const HOLD: usize = FRAME_HEADER + 8 - 1;

/// Where the limit goes: called with the server's `MAX_CONCURRENT_STREAMS` (`u32::MAX`
/// when its first SETTINGS frame sets none).
pub(crate) type OnLimit = Arc<dyn Fn(u32) + Send + Sync>;

/// Reads `MAX_CONCURRENT_STREAMS` out of the server's SETTINGS frames.
pub(crate) struct Settings {
    /// Whether the current frame is a SETTINGS frame (not an ACK) on stream 0.
    in_settings: bool,
    entry: [u8; 6],
    entry_len: usize,
    /// Whether a SETTINGS frame has been seen (until then the limit is unknown).
    seen: bool,
    on_limit: OnLimit,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub(crate) fn new(on_limit: OnLimit) -> Self {
        Settings {
            in_settings: false,
            entry: [0; 6],
            entry_len: 0,
            seen: false,
            on_limit,
        }
    }

    fn start(&mut self, h: Header) {
        self.in_settings = h.kind == SETTINGS && h.flags & ACK == 0 && h.stream == 0;
        if self.in_settings && !self.seen {
            // The server's preface: no limit unless this frame sets one.
            self.seen = true;
            (self.on_limit)(u32::MAX);
        }
        self.entry_len = 0;
    }

    fn payload(&mut self, mut bytes: &[u8]) {
        if !self.in_settings {
            return;
        }
        while !bytes.is_empty() {
            let n = (6 - self.entry_len).min(bytes.len());
            self.entry[self.entry_len..self.entry_len + n].copy_from_slice(&bytes[..n]);
            self.entry_len += n;
            bytes = &bytes[n..];
            if self.entry_len == 6 {
                self.entry_len = 0;
                let e = &self.entry;
                if u16::from_be_bytes([e[0], e[1]]) == MAX_CONCURRENT_STREAMS {
                    (self.on_limit)(u32::from_be_bytes([e[2], e[3], e[4], e[5]]));
                }
            }
        }
    }
}

/// Keep-alive of one connection: the schedule, the streams open on it and the timer.
struct Pinger {
    schedule: KeepAlive,
    /// The client streams open (opened by our HEADERS, not yet ended by the
    /// server's END_STREAM or a reset either way).
    open: Vec<u32>,
    sleep: Pin<Box<Sleep>>,
    /// What the timer is set for.
    armed: Option<Instant>,
}

impl fmt::Debug for Pinger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinger")
            .field("schedule", &self.schedule)
            .field("open", &self.open.len())
            .finish_non_exhaustive()
    }
}

impl Pinger {
    fn new(config: KeepAliveConfig) -> Self {
        let now = Instant::now();
        Pinger {
            schedule: KeepAlive::new(config, now),
            open: Vec::new(),
            sleep: Box::pin(tokio::time::sleep_until(now)),
            armed: None,
        }
    }

    fn sent_header(&mut self, h: Header, now: Instant) {
        match h.kind {
            HEADERS if h.stream % 2 == 1 && !self.open.contains(&h.stream) => {
                self.open.push(h.stream);
                self.schedule.call_opened(now);
            }
            RST_STREAM => self.closed(h.stream),
            _ => {}
        }
    }

    fn received_header(&mut self, h: Header, now: Instant) {
        match h.kind {
            DATA | HEADERS => {
                if h.flags & END_STREAM != 0 {
                    self.closed(h.stream);
                }
                self.schedule.heard(Heard::Response, now);
            }
            RST_STREAM => {
                self.closed(h.stream);
                self.schedule.heard(Heard::Other, now);
            }
            _ => self.schedule.heard(Heard::Other, now),
        }
    }

    fn closed(&mut self, stream: u32) {
        if let Some(i) = self.open.iter().position(|s| *s == stream) {
            self.open.swap_remove(i);
        }
    }

    /// Queues a PING when one is due, fails when one went unanswered, and sets the
    /// timer for the next of these.
    fn poll(&mut self, injector: &mut Injector, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.schedule.deadline()
                && now >= deadline
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "keep-alive PING not answered in time",
                ));
            }
            let next = self.schedule.next_ping(!self.open.is_empty());
            if let Some(at) = next
                && now >= at
            {
                self.schedule.ping_sent(now);
                injector.queue(Header::frame(PING, 0, 0, &PING_PAYLOAD));
                continue;
            }
            let wake = match (next, self.schedule.deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(wake) = wake else {
                self.armed = None;
                return Ok(());
            };
            // Activity only moves the next PING later: the timer is moved only
            // earlier, and otherwise fires and finds the new time here.
            if self.armed.is_none_or(|armed| wake < armed) {
                self.sleep.as_mut().reset(wake);
                self.armed = Some(wake);
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.armed = None;
        }
    }
}

/// Bytes read from the server that were decided on and not yet handed up, because
/// the reader's buffer was too small.
#[derive(Debug)]
struct Spill {
    bytes: [u8; 64],
    start: usize,
    end: usize,
}

pin_project! {
    /// A client connection whose bytes go through the balancer's frame tracking: the
    /// server's stream limit is published, and with keep-alive on, PINGs are sent and
    /// their answers taken out before hyper reads.
    #[derive(Debug)]
    pub(crate) struct Wire<T> {
        #[pin]
        io: T,
        // Read side: frames in progress, bytes held back at a boundary until they
        // are known not to be a PING answer of ours.
        remaining: usize,
        held: [u8; HOLD],
        held_len: usize,
        spill: Spill,
        settings: Settings,
        // Write side.
        injector: Injector,
        pinger: Option<Pinger>,
    }
}

impl<T> Wire<T> {
    pub(crate) fn new(io: T, on_limit: OnLimit, keep_alive: Option<KeepAliveConfig>) -> Self {
        Wire {
            io,
            remaining: 0,
            held: [0; HOLD],
            held_len: 0,
            spill: Spill {
                bytes: [0; 64],
                start: 0,
                end: 0,
            },
            settings: Settings::new(on_limit),
            injector: Injector::new(CLIENT_PREFACE),
            pinger: keep_alive.map(Pinger::new),
        }
    }
}

/// Goes through `bytes` (new bytes from the server, the previous held bytes first),
/// keeps what hyper should read at the front and returns its length, and the offset
/// of a tail to hold back (`bytes.len()` when none).
fn scan(
    bytes: &mut [u8],
    remaining: &mut usize,
    settings: &mut Settings,
    mut pinger: Option<&mut Pinger>,
) -> (usize, usize) {
    let now = pinger.as_ref().map(|_| Instant::now());
    let len = bytes.len();
    let (mut i, mut w) = (0, 0);
    while i < len {
        if *remaining > 0 {
            let n = (*remaining).min(len - i);
            settings.payload(&bytes[i..i + n]);
            bytes.copy_within(i..i + n, w);
            i += n;
            w += n;
            *remaining -= n;
            continue;
        }
        if len - i < FRAME_HEADER {
            return (w, i);
        }
        let h = Header::parse(&bytes[i..i + FRAME_HEADER]);
        if let (Some(p), Some(now)) = (pinger.as_deref_mut(), now) {
            if h.kind == PING && h.flags & ACK != 0 && h.len == PING_PAYLOAD.len() && h.stream == 0
            {
                if len - i < FRAME_HEADER + h.len {
                    return (w, i);
                }
                if bytes[i + FRAME_HEADER..i + FRAME_HEADER + h.len] == PING_PAYLOAD {
                    p.schedule.heard(Heard::Pong, now);
                    i += FRAME_HEADER + h.len;
                    continue;
                }
            }
            p.received_header(h, now);
        }
        settings.start(h);
        bytes.copy_within(i..i + FRAME_HEADER, w);
        i += FRAME_HEADER;
        w += FRAME_HEADER;
        *remaining = h.len;
    }
    (w, len)
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for Wire<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if let Some(pinger) = this.pinger.as_mut() {
            pinger.poll(this.injector, cx)?;
            // A failed write shows when hyper writes next; what the server sent before
            // (a GOAWAY, say) is still read.
            if let Poll::Ready(Err(e)) = this.injector.poll_inject(this.io.as_mut(), cx) {
                tracing::debug!(error = %e, "keep-alive PING not written");
                this.injector.abandon();
            }
        }
        loop {
            let spill = &mut this.spill;
            if spill.start < spill.end {
                let n = (spill.end - spill.start).min(buf.remaining());
                buf.put_slice(&spill.bytes[spill.start..spill.start + n]);
                spill.start += n;
                return Poll::Ready(Ok(()));
            }
            let held = *this.held_len;
            if buf.remaining() > held + HOLD {
                // In place: the held bytes, then what the socket has.
                let base = buf.filled().len();
                buf.put_slice(&this.held[..held]);
                match this.io.as_mut().poll_read(cx, buf) {
                    Poll::Pending => {
                        buf.set_filled(base);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                *this.held_len = 0;
                let end = buf.filled().len();
                if end == base + held {
                    // End of stream: whatever was held goes up as it is.
                    return Poll::Ready(Ok(()));
                }
                let region = &mut buf.filled_mut()[base..end];
                let (kept, hold) =
                    scan(region, this.remaining, this.settings, this.pinger.as_mut());
                let tail = region.len() - hold;
                this.held[..tail].copy_from_slice(&region[hold..]);
                *this.held_len = tail;
                buf.set_filled(base + kept);
                if kept > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // A small buffer: read into the spill and hand it up from there.
            let mut scratch = [0u8; 64];
            scratch[..held].copy_from_slice(&this.held[..held]);
            let mut rb = ReadBuf::new(&mut scratch[held..]);
            match this.io.as_mut().poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let got = rb.filled().len();
            *this.held_len = 0;
            let (kept, hold) = if got == 0 {
                (held, held)
            } else {
                scan(
                    &mut scratch[..held + got],
                    this.remaining,
                    this.settings,
                    this.pinger.as_mut(),
                )
            };
            let tail = held + got - hold;
            this.held[..tail].copy_from_slice(&scratch[hold..held + got]);
            *this.held_len = tail;
            let spill = &mut this.spill;
            spill.bytes[..kept].copy_from_slice(&scratch[..kept]);
            spill.start = 0;
            spill.end = kept;
            if kept > 0 || got == 0 {
                let n = kept.min(buf.remaining());
                buf.put_slice(&spill.bytes[..n]);
                spill.start = n;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for Wire<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let Some(pinger) = this.pinger.as_mut() else {
            return this.io.poll_write(cx, buf);
        };
        pinger.poll(this.injector, cx)?;
        std::task::ready!(this.injector.poll_inject(this.io.as_mut(), cx))?;
        let allowed = this.injector.allowance(buf.len());
        let n = std::task::ready!(this.io.as_mut().poll_write(cx, &buf[..allowed]))?;
        let now = Instant::now();
        this.injector
            .wrote(&buf[..n], |h| pinger.sent_header(h, now));
        if this.injector.pending() {
            // The boundary may be here: the PING goes before hyper's next frame.
            let _ = this.injector.poll_inject(this.io.as_mut(), cx)?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if this.pinger.is_some() {
            std::task::ready!(this.injector.poll_inject(this.io.as_mut(), cx))?;
        }
        this.io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.pinger.is_none() {
            return self.project().io.poll_write_vectored(cx, bufs);
        }
        // Frames are followed byte by byte: one slice at a time.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::frames::FrameCursor;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn setting(id: u16, value: u32) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&value.to_be_bytes());
        out
    }

    fn limit_sink() -> (OnLimit, Arc<AtomicU32>) {
        let max = Arc::new(AtomicU32::new(0));
        let sink = max.clone();
        (Arc::new(move |v| sink.store(v, Ordering::Relaxed)), max)
    }

    /// A server's bytes: SETTINGS (window size, then max streams 7), a WINDOW_UPDATE,
    /// a SETTINGS ACK, HEADERS and DATA on stream 1 whose payloads look like SETTINGS
    /// entries, an answer to one of our PINGs, a PING ACK of someone else's, then
    /// SETTINGS lowering the limit to 3.
    fn stream() -> (Vec<u8>, Vec<u8>) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        let mut first = setting(0x4, 65_535);
        first.extend(setting(MAX_CONCURRENT_STREAMS, 7));
        let frames = [
            (Header::frame(SETTINGS, 0, 0, &first), true),
            (Header::frame(0x8, 0, 0, &[0, 0, 1, 0]), true),
            (Header::frame(SETTINGS, ACK, 0, &[]), true),
            (
                Header::frame(HEADERS, 0x4, 1, &setting(MAX_CONCURRENT_STREAMS, 999)),
                true,
            ),
            (Header::frame(PING, ACK, 0, &PING_PAYLOAD), false),
            (
                Header::frame(DATA, 0x1, 1, &setting(MAX_CONCURRENT_STREAMS, 999)),
                true,
            ),
            (Header::frame(PING, ACK, 0, b"someones"), true),
            (
                Header::frame(SETTINGS, 0, 0, &setting(MAX_CONCURRENT_STREAMS, 3)),
                true,
            ),
        ];
        for (frame, kept) in frames {
            bytes.extend_from_slice(&frame);
            if kept {
                expected.extend_from_slice(&frame);
            }
        }
        (bytes, expected)
    }

    /// Reads everything `bytes` holds through a [`Wire`] (keep-alive on, so our PING
    /// answers are taken out), with the socket handing it over in `cuts` pieces and
    /// the reader asking for at most `room` bytes at a time.
    async fn read_through(bytes: Vec<u8>, cuts: Vec<usize>, room: usize) -> (Vec<u8>, u32) {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let (on_limit, max) = limit_sink();
        let keep_alive = KeepAliveConfig {
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            while_idle: false,
            permit_time: Duration::from_secs(300),
        };
        let mut wire = Wire::new(client, on_limit, Some(keep_alive));
        let writer = tokio::spawn(async move {
            let mut at = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                let cut = cut.clamp(at, bytes.len());
                server.write_all(&bytes[at..cut]).await.expect("write");
                server.flush().await.expect("flush");
                at = cut;
                tokio::task::yield_now().await;
            }
        });
        let mut out = Vec::new();
        let mut chunk = vec![0u8; room];
        loop {
            let n = wire.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        writer.await.expect("writer");
        (out, max.load(Ordering::Relaxed))
    }

    use std::time::Duration;

    #[tokio::test]
    async fn reads_the_limit_and_takes_out_our_ping_answers() {
        let (bytes, expected) = stream();
        let (out, max) = read_through(bytes, vec![], 4096).await;
        assert_eq!(out, expected);
        assert_eq!(max, 3);
    }

    #[tokio::test]
    async fn a_first_settings_frame_without_a_limit_means_none() {
        let bytes = Header::frame(SETTINGS, 0, 0, &setting(0x4, 65_535));
        let (_, max) = read_through(bytes, vec![], 4096).await;
        assert_eq!(max, u32::MAX);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_segmentation_and_buffer_size_reads_the_same(
            cuts in prop::collection::vec(0usize..200, 0..20),
            room in 1usize..64,
        ) {
            let (bytes, expected) = stream();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (out, max) = runtime.block_on(read_through(bytes, cuts, room));
            prop_assert_eq!(out, expected);
            prop_assert_eq!(max, 3);
        }
    }

    #[test]
    fn the_cursor_finds_boundaries_whatever_the_segmentation() {
        let mut bytes = vec![b'P'; CLIENT_PREFACE];
        bytes.extend(Header::frame(SETTINGS, 0, 0, &setting(0x4, 1)));
        bytes.extend(Header::frame(HEADERS, 0x4, 1, &[1, 2, 3]));
        let boundaries = [CLIENT_PREFACE, CLIENT_PREFACE + 15, bytes.len()];
        for step in 1..bytes.len() {
            let mut cursor = FrameCursor::new(CLIENT_PREFACE);
            let mut headers = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let end = (at + step).min(bytes.len());
                cursor.feed(&bytes[at..end], |h| headers.push(h.kind), |_| {});
                at = end;
                assert_eq!(
                    cursor.at_boundary(),
                    boundaries.contains(&at),
                    "step {step} at {at}"
                );
            }
            assert_eq!(headers, [SETTINGS, HEADERS]);
        }
    }
}
