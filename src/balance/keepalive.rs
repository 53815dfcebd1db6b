//! When to send an HTTP/2 keep-alive PING: often enough to find a frozen server,
//! never so often that a gRPC server's PING policing closes the connection.
//!
//! # The servers' policies
//!
//! A gRPC server counts a PING that arrives too soon as a *strike* and answers the
//! strike after the second with `GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")`, which
//! fails every call on the connection. By default, "too soon" is:
//!
//! - grpc-go (`http2_server.go`, `handlePing`): less than `MinTime` (5 minutes) after
//!   the previous PING, counted or not. Sending headers or data resets the count, and
//!   the PING after such a reset is never a strike.
//! - gRPC C-core (`Chttp2PingAbusePolicy`; Python, Ruby, PHP, C#, C++): less than
//!   `grpc.http2.min_ping_interval_without_data_ms` (5 minutes) after the previous
//!   PING; sending data or headers resets the count and the clock.
//! - grpc-java (`KeepAliveEnforcer`): less than `permitKeepAliveTime` (5 minutes)
//!   after the last PING it did not count, or after the connection began; sending
//!   data or headers resets the count and sets that time back to the connection's
//!   start.
//! - Without calls open, each of them allows one PING per 2 hours unless the server
//!   permits PINGs without calls.
//!
//! [`KeepAlive`] keeps the count as the strictest of the three would, and never sends
//! a PING that would be a third strike. It sends a PING when calls are open and
//! nothing has been received for the keep-alive interval, and then:
//!
//! - if no server would count it, at once;
//! - if some server would count it, only while it would be at most the second strike
//!   and a call was opened since the server last proved it is alive (a PING answer,
//!   headers or data): a call sent to a server that froze before it is still found
//!   out within interval + timeout;
//! - otherwise once no server counts it: [`PermitTime`] (5 minutes) plus a tenth of it
//!   for the network's jitter after the previous PING.
//!
//! So a call that waits minutes for its answer sees at most two PINGs before the first
//! 5 minutes and one every 5½ minutes after, a server stream whose messages come every
//! few minutes one PING after each, and every server is proven alive within interval +
//! timeout of a call it was sent.

use std::time::Duration;

use tokio::time::Instant;

/// The most strikes a server accepts (grpc-go's `maxPingStrikes`, C-core's
/// `grpc.http2.max_ping_strikes`, grpc-java's `MAX_PING_STRIKES`).
pub(crate) const MAX_STRIKES: u32 = 2;

/// The servers' default minimum time between PINGs while calls are open.
pub(crate) const DEFAULT_PERMIT_TIME: Duration = Duration::from_secs(5 * 60);

/// The keep-alive settings of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeepAliveConfig {
    /// Silence (nothing received) after which a PING may go out.
    pub(crate) interval: Duration,
    /// How long a PING may go unanswered before the connection is declared dead.
    pub(crate) timeout: Duration,
    /// Whether to PING while no call is open (the servers must permit it).
    pub(crate) while_idle: bool,
    /// The least time between PINGs the servers permit without counting a strike.
    pub(crate) permit_time: Duration,
}

impl KeepAliveConfig {
    /// The settings for a connection after a server said PINGs came too often: the
    /// interval and the permitted time doubled, as grpc-go's client does.
    pub(crate) fn calmer(self) -> Self {
        KeepAliveConfig {
            interval: self.interval.saturating_mul(2),
            permit_time: self.permit_time.saturating_mul(2),
            ..self
        }
    }
}

/// What arrived from the server, as far as keep-alive cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard {
    /// HEADERS or DATA: the server is alive and its PING count starts over.
    Response,
    /// The answer to our PING.
    Pong,
    /// Any other frame: the server's process is alive.
    Other,
}

/// One connection's PING schedule and the server's strike count as modelled here.
#[derive(Debug)]
pub(crate) struct KeepAlive {
    config: KeepAliveConfig,
    started: Instant,
    /// The last time anything was received.
    last_read: Instant,
    /// The last time a call was opened.
    last_opened: Instant,
    /// A call was opened and the server has not proven it is alive since.
    unproven_call: bool,
    /// The strikes the strictest server has counted.
    strikes: u32,
    /// Whether the server sent headers or data since our last PING (grpc-go's and
    /// C-core's reset).
    reset: bool,
    last_ping: Option<Instant>,
    /// grpc-java's `lastValidPingTime`: the connection's start, or the last PING that
    /// counted as no strike.
    last_free: Instant,
    /// When the PING in flight goes unanswered for too long.
    deadline: Option<Instant>,
}

// === impl KeepAlive ===

impl KeepAlive {
    pub(crate) fn new(config: KeepAliveConfig, now: Instant) -> Self {
        KeepAlive {
            config,
            started: now,
            last_read: now,
            last_opened: now,
            unproven_call: false,
            strikes: 0,
            reset: false,
            last_ping: None,
            last_free: now,
            deadline: None,
        }
    }

    /// Something arrived from the server.
    pub(crate) fn heard(&mut self, heard: Heard, now: Instant) {
        self.last_read = now;
        match heard {
            Heard::Response => {
                self.unproven_call = false;
                self.strikes = 0;
                self.reset = true;
                self.last_free = self.started;
            }
            Heard::Pong => {
                self.unproven_call = false;
                self.deadline = None;
            }
            Heard::Other => {}
        }
    }

    /// A call was opened (its HEADERS went out).
    pub(crate) fn call_opened(&mut self, now: Instant) {
        self.unproven_call = true;
        self.last_opened = now;
    }

    /// The earliest time a PING would be no strike for any server.
    fn free_at(&self) -> Instant {
        let wait = self.config.permit_time + self.config.permit_time / 10;
        let java = self.last_free + wait;
        match self.last_ping {
            Some(last) if !self.reset => java.max(last + wait),
            _ => java,
        }
    }

    /// When the next PING should go out, if one should: `None` while one is in
    /// flight, or while no call is open (unless PINGs go while idle).
    pub(crate) fn next_ping(&self, calls_open: bool) -> Option<Instant> {
        if self.deadline.is_some() || !(calls_open || self.config.while_idle) {
            return None;
        }
        // A new call gets the interval to be answered before it is doubted.
        let silent = self.last_read.max(self.last_opened) + self.config.interval;
        let free = self.free_at();
        if free <= silent {
            return Some(silent);
        }
        if calls_open && self.unproven_call && self.strikes < MAX_STRIKES {
            return Some(silent);
        }
        Some(free)
    }

    /// A PING is sent now; returns the time by which its answer must arrive.
    pub(crate) fn ping_sent(&mut self, now: Instant) -> Instant {
        if now >= self.free_at() {
            self.last_free = now;
        } else {
            self.strikes = self.strikes.saturating_add(1);
        }
        self.last_ping = Some(now);
        self.reset = false;
        let deadline = now + self.config.timeout;
        self.deadline = Some(deadline);
        deadline
    }

    /// When the PING in flight times out, if one is.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    #[cfg(test)]
    pub(crate) fn strikes(&self) -> u32 {
        self.strikes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn config() -> KeepAliveConfig {
        KeepAliveConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            while_idle: false,
            permit_time: DEFAULT_PERMIT_TIME,
        }
    }

    /// grpc-go's `handlePing` policy (`MinTime` 5 minutes, 2 strikes), as a server
    /// would apply it to the PINGs it receives.
    #[derive(Default)]
    struct GrpcGo {
        last_ping: Option<Instant>,
        reset: bool,
        strikes: u32,
    }

    impl GrpcGo {
        fn sent_data(&mut self) {
            self.reset = true;
        }

        /// Whether the connection survives this PING.
        fn ping(&mut self, now: Instant) -> bool {
            let last = self.last_ping.replace(now);
            if std::mem::take(&mut self.reset) {
                self.strikes = 0;
                return true;
            }
            if last.is_some_and(|last| last + DEFAULT_PERMIT_TIME > now) {
                self.strikes += 1;
            }
            self.strikes <= MAX_STRIKES
        }
    }

    /// grpc-java's `KeepAliveEnforcer` (calls open).
    struct GrpcJava {
        epoch: Instant,
        last_valid: Instant,
        strikes: u32,
    }

    impl GrpcJava {
        fn new(now: Instant) -> Self {
            GrpcJava {
                epoch: now,
                last_valid: now,
                strikes: 0,
            }
        }

        fn sent_data(&mut self) {
            self.last_valid = self.epoch;
            self.strikes = 0;
        }

        fn ping(&mut self, now: Instant) -> bool {
            if self.last_valid + DEFAULT_PERMIT_TIME <= now {
                self.last_valid = now;
                return true;
            }
            self.strikes += 1;
            self.strikes <= MAX_STRIKES
        }
    }

    /// Runs a connection on which the server answers every PING at once and sends
    /// data at `data` (offsets from the start), with one call open from 0 to `end`
    /// and more calls opened at `calls`; returns the PING times.
    fn run(data: &[Duration], calls: &[Duration], end: Duration) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(config(), t0);
        let mut go = GrpcGo::default();
        let mut java = GrpcJava::new(t0);
        let mut pings = Vec::new();
        let mut events: Vec<(Duration, u8)> = data.iter().map(|d| (*d, 0)).collect();
        events.extend(calls.iter().map(|c| (*c, 1)));
        events.push((Duration::ZERO, 1));
        events.sort();
        let mut events = events.into_iter().peekable();
        let mut now = t0;
        loop {
            let next_event = events.peek().map(|(at, _)| t0 + *at);
            let next_ping = ka.next_ping(true);
            let at = match (next_event, next_ping) {
                (Some(e), Some(p)) => e.min(p),
                (Some(e), None) => e,
                (None, Some(p)) => p,
                (None, None) => break,
            };
            if at > t0 + end {
                break;
            }
            now = at.max(now);
            if next_event == Some(at) || next_event.is_some_and(|e| e <= now) {
                let (_, kind) = events.next().expect("peeked");
                if kind == 0 {
                    go.sent_data();
                    java.sent_data();
                    ka.heard(Heard::Response, now);
                } else {
                    ka.call_opened(now);
                }
                continue;
            }
            ka.ping_sent(now);
            pings.push(now - t0);
            assert!(
                go.ping(now),
                "grpc-go closes the connection at {:?}",
                now - t0
            );
            assert!(
                java.ping(now),
                "grpc-java closes the connection at {:?}",
                now - t0
            );
            ka.heard(Heard::Pong, now);
        }
        pings
    }

    #[test]
    fn a_silent_call_of_an_hour_never_trips_a_policy() {
        let pings = run(&[], &[], 60 * MIN);
        // Proof of life 10 s into the call, then one PING every 5.5 minutes.
        assert_eq!(pings[0], Duration::from_secs(10));
        assert_eq!(pings[1], Duration::from_secs(10 + 330));
        assert!(pings.len() >= 10, "{pings:?}");
        for pair in pings.windows(2).skip(1) {
            assert!(pair[1] - pair[0] >= DEFAULT_PERMIT_TIME, "{pings:?}");
        }
    }

    #[test]
    fn new_calls_on_a_silent_connection_are_checked_within_the_strike_budget() {
        // The first call is checked 10 s in (grpc-java's first strike: the
        // connection is young), a second opened at 60 s while the first is still
        // silent 10 s after it (the second strike); those opened at 120 s and 180 s
        // wait until a PING counts as no strike again.
        let calls = [60, 120, 180].map(Duration::from_secs);
        let pings = run(&[], &calls, 10 * MIN);
        assert_eq!(
            &pings[..3],
            &[10, 70, 400].map(Duration::from_secs),
            "{pings:?}"
        );
    }

    #[test]
    fn a_stream_with_sparse_messages_is_pinged_after_each() {
        // A message every 4 minutes for 20 minutes.
        let data: Vec<Duration> = (1..=5).map(|i| 4 * MIN * i).collect();
        let pings = run(&data, &[], 20 * MIN);
        // 10 s into the call, then once per gap: 5.5 minutes after the connection
        // began (no server counts it), then 10 s after each message.
        assert_eq!(
            pings,
            [10, 330, 490, 730, 970].map(Duration::from_secs),
            "{pings:?}"
        );
    }

    #[test]
    fn chatty_calls_are_pinged_after_each_silence_once_the_connection_is_old() {
        // Data every 30 s for 20 minutes: a PING 10 s into each silence, within
        // every server's policy because each one follows data.
        let data: Vec<Duration> = (1..=40).map(|i| Duration::from_secs(30 * i)).collect();
        let pings = run(&data, &[], 20 * MIN);
        let old = pings
            .iter()
            .filter(|p| **p > Duration::from_secs(330))
            .count();
        assert_eq!(old, 29, "{pings:?}");
    }

    #[test]
    fn a_ping_in_flight_blocks_the_next_until_answered() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(config(), t0);
        ka.call_opened(t0);
        let at = ka.next_ping(true).expect("a call is open");
        assert_eq!(at, t0 + Duration::from_secs(10));
        let deadline = ka.ping_sent(at);
        assert_eq!(deadline, at + Duration::from_secs(5));
        assert_eq!(ka.deadline(), Some(deadline));
        assert_eq!(ka.next_ping(true), None);
        ka.heard(Heard::Pong, at + Duration::from_millis(1));
        assert_eq!(ka.deadline(), None);
        assert!(ka.next_ping(true).is_some());
    }

    #[test]
    fn idle_connections_are_not_pinged_unless_asked() {
        let t0 = Instant::now();
        let ka = KeepAlive::new(config(), t0);
        assert_eq!(ka.next_ping(false), None);
        let idle = KeepAlive::new(
            KeepAliveConfig {
                while_idle: true,
                ..config()
            },
            t0,
        );
        assert!(idle.next_ping(false).is_some());
    }

    #[test]
    fn strikes_never_pass_the_limit_whatever_the_calls() {
        // Many calls opened on a silent connection: PINGs stop at two strikes.
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(config(), t0);
        let mut now = t0;
        for _ in 0..20 {
            ka.call_opened(now);
            let at = ka.next_ping(true).expect("calls are open");
            if at > now + Duration::from_secs(60) {
                break;
            }
            now = at;
            ka.ping_sent(now);
            ka.heard(Heard::Pong, now);
            assert!(ka.strikes() <= MAX_STRIKES);
        }
        assert_eq!(ka.strikes(), MAX_STRIKES);
    }

    #[test]
    fn calmer_doubles_interval_and_permit_time() {
        let calm = config().calmer();
        assert_eq!(calm.interval, Duration::from_secs(20));
        assert_eq!(calm.permit_time, Duration::from_secs(600));
        assert_eq!(calm.timeout, config().timeout);
    }
}
