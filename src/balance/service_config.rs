//! Per-method call policies as gRFC A6 defines them: retries, a default deadline,
//! and retry throttling, set in code or read from a gRPC service config document
//! (the JSON that grpc-go and grpc-java read).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tonic::Code;

use super::accrual::CodeSet;
use super::latency::LatencyWindow;
use super::metrics::MethodCounter;
use crate::Error;

/// The largest `maxAttempts` gRFC A6 allows; larger values are treated as this.
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// Call policies for a channel's methods (a gRPC service config): which calls are
/// retried and how, a default deadline per method, and the token bucket that stops
/// retries when too many calls fail.
///
/// Set it with [`BalancedChannelBuilder::service_config`](super::BalancedChannelBuilder::service_config),
/// built in code or parsed from JSON:
///
/// ```
/// use std::time::Duration;
/// use tonic::Code;
/// use tonic_discovery::balance::{MethodConfig, MethodName, RetryPolicy, ServiceConfig};
///
/// let in_code = ServiceConfig::new().method(
///     MethodConfig::new([MethodName::service("echo.v1.Echo")])
///         .timeout(Duration::from_secs(2))
///         .retry(RetryPolicy::new(3, [Code::Unavailable])),
/// );
/// let from_json = ServiceConfig::from_json(
///     r#"{"methodConfig": [{
///         "name": [{"service": "echo.v1.Echo"}],
///         "timeout": "2s",
///         "retryPolicy": {
///             "maxAttempts": 3,
///             "initialBackoff": "0.1s",
///             "maxBackoff": "1s",
///             "backoffMultiplier": 2,
///             "retryableStatusCodes": ["UNAVAILABLE"]
///         }
///     }]}"#,
/// )?;
/// assert_eq!(in_code, from_json);
/// # Ok::<(), tonic_discovery::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct ServiceConfig {
    methods: Vec<MethodConfig>,
    throttling: Option<RetryThrottling>,
}

/// The policies of the methods [`names`](MethodConfig::new) lists.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct MethodConfig {
    names: Vec<MethodName>,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    hedge: Option<HedgingPolicy>,
}

/// Which methods a [`MethodConfig`] applies to: one method, every method of a
/// service, or every method of the channel. The most specific match wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodName {
    service: String,
    method: String,
}

/// How a call that failed is tried again (gRFC A6 `retryPolicy`).
///
/// A call is retried while it is not committed: until response headers arrive, so a
/// status the server sends without a response (Trailers-Only, how servers fail
/// calls fast) can be retried, as can a call whose connection was lost or stream
/// reset before any response (as `UNAVAILABLE`, gRPC's code for it), and a call
/// whose response began never is. Each retry
/// waits a random time up to the current backoff (`initial_backoff`, multiplied by
/// `multiplier` at each retry, at most `max_backoff`), or what the server asked
/// for in `grpc-retry-pushback-ms` (a negative or malformed value stops retrying).
/// Retries go to another instance when one is in service, carry
/// `grpc-previous-rpc-attempts`, and stay within the call's deadline.
#[derive(Clone, Copy, PartialEq)]
#[must_use]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) multiplier: f64,
    pub(crate) codes: CodeSet,
}

/// How a call is hedged (gRFC A6 `hedgingPolicy`, "The Tail at Scale"'s hedged
/// requests): the first attempt goes out at once, and while no answer came another
/// goes to an instance not tried yet after each `delay`, up to `max_attempts` in all.
/// The first answer wins and the attempts still in flight are cancelled
/// (`RST_STREAM CANCEL`), unless it is a failure with a non-fatal code: then the next
/// attempt goes at once (or after the server's `grpc-retry-pushback-ms`; a negative
/// or malformed value stops hedging). Each non-fatal failure takes a token from the
/// channel's [`RetryThrottling`]; while throttled no more hedges are sent. Hedges
/// carry `grpc-previous-rpc-attempts`; only calls whose request was sent whole and
/// kept (within the channel's `retry_buffer`) are hedged. Hedge only idempotent methods: a server may
/// process every attempt.
///
/// [`adaptive_delay`](Self::adaptive_delay) sets the delay from the method's own
/// latency (beyond gRFC A6): a hedge then fires only for the calls in the tail.
#[derive(Clone, Copy, PartialEq)]
#[must_use]
pub struct HedgingPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) delay: HedgeDelay,
    pub(crate) codes: CodeSet,
}

/// When the next hedge goes out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum HedgeDelay {
    Fixed(Duration),
    /// The `percentile` (0–100) of the method's recent latency, within `floor` and
    /// `cap` (the cap while too few calls were measured).
    Percentile {
        percentile: f64,
        floor: Duration,
        cap: Duration,
    },
}

/// The channel's token bucket for retries (gRFC A6 `retryThrottling`): each call
/// that fails with a retryable status takes a token, each that succeeds gives back
/// `token_ratio`; retries stop while the bucket is at or below half of
/// `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct RetryThrottling {
    pub(crate) max_tokens: u32,
    pub(crate) token_ratio: f32,
}

// === impl ServiceConfig ===

impl ServiceConfig {
    /// No policies: calls are tried once (resends of calls a server never processed
    /// aside, see [`BalancedChannelBuilder::max_resends`](super::BalancedChannelBuilder::max_resends)).
    pub fn new() -> Self {
        ServiceConfig::default()
    }

    /// Adds the policies of some methods.
    pub fn method(mut self, config: MethodConfig) -> Self {
        self.methods.push(config);
        self
    }

    /// Sets the channel's retry throttling.
    pub fn retry_throttling(mut self, throttling: RetryThrottling) -> Self {
        self.throttling = Some(throttling);
        self
    }

    /// Parses a gRPC service config document: `methodConfig` (each with `name`,
    /// `timeout`, and `retryPolicy` or `hedgingPolicy`) and `retryThrottling`.
    /// Fields this crate does not act on (`loadBalancingConfig`, `waitForReady`,
    /// message size limits) are ignored, as gRPC clients ignore unknown fields. An
    /// adaptive hedging delay is set in code only
    /// ([`HedgingPolicy::adaptive_delay`]): the document stays one grpc-go and
    /// grpc-java read.
    ///
    /// # Errors
    ///
    /// A configuration [`Error`] naming the field, for a document that is not JSON
    /// or breaks gRFC A6's rules (`maxAttempts` below 2, a backoff that is not a
    /// positive duration such as `"0.1s"`, an unknown status code, no retryable
    /// codes, the same method named twice, a method without its service).
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let doc: json::Document = serde_json::from_str(json)
            .map_err(|e| Error::config(format!("service config: {e}")))?;
        let mut config = ServiceConfig::new();
        for (i, m) in doc.method_config.into_iter().enumerate() {
            let at = format!("methodConfig[{i}]");
            config = config.method(m.parse(&at)?);
        }
        if let Some(t) = doc.retry_throttling {
            config = config.retry_throttling(t.parse()?);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules [`from_json`](Self::from_json) checks, for a config built in
    /// code.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let mut seen = HashMap::new();
        for (i, m) in self.methods.iter().enumerate() {
            let at = format!("methodConfig[{i}]");
            if m.names.is_empty() {
                return Err(Error::config(format!("{at}.name: names no method")));
            }
            for (j, name) in m.names.iter().enumerate() {
                if name.service.is_empty() && !name.method.is_empty() {
                    return Err(Error::config(format!(
                        "{at}.name[{j}]: method `{}` without its service",
                        name.method
                    )));
                }
                if let Some(first) = seen.insert(name, i) {
                    return Err(Error::config(format!(
                        "{at}.name[{j}]: {name} is already configured by methodConfig[{first}]"
                    )));
                }
            }
            if let Some(timeout) = m.timeout
                && timeout.is_zero()
            {
                return Err(Error::config(format!("{at}.timeout: must be positive")));
            }
            if let Some(retry) = &m.retry {
                retry
                    .validate()
                    .map_err(|e| Error::config(format!("{at}.retryPolicy.{e}")))?;
            }
            if let Some(hedge) = &m.hedge {
                if m.retry.is_some() {
                    return Err(Error::config(format!(
                        "{at}: retryPolicy and hedgingPolicy exclude each other"
                    )));
                }
                hedge
                    .validate()
                    .map_err(|e| Error::config(format!("{at}.hedgingPolicy.{e}")))?;
            }
        }
        if let Some(t) = &self.throttling {
            t.validate()
                .map_err(|e| Error::config(format!("retryThrottling.{e}")))?;
        }
        Ok(())
    }

    /// The lookup table calls use, or `None` when no method has a policy.
    pub(crate) fn methods(&self) -> Option<Methods> {
        if self.methods.is_empty() {
            return None;
        }
        let mut table = Methods::default();
        for m in &self.methods {
            let retry = m.retry.map(|r| RetryPolicy {
                max_attempts: r.max_attempts.min(MAX_ATTEMPTS),
                ..r
            });
            let hedge = m.hedge.map(|h| HedgingPolicy {
                max_attempts: h.max_attempts.min(MAX_ATTEMPTS),
                ..h
            });
            for name in &m.names {
                let policy = |label: String| {
                    Arc::new(Method {
                        label: label.into(),
                        timeout: m.timeout,
                        retry,
                        hedge,
                        attempts: MethodCounter::default(),
                        latency: hedge.and_then(|h| match h.delay {
                            HedgeDelay::Percentile { .. } => Some(LatencyWindow::default()),
                            HedgeDelay::Fixed(_) => None,
                        }),
                    })
                };
                match (name.service.is_empty(), name.method.is_empty()) {
                    (true, _) => table.default = Some(policy("*".into())),
                    (false, true) => {
                        let label = format!("{}/*", name.service);
                        let service = name.service.as_str().into();
                        table.services.insert(service, policy(label));
                    }
                    (false, false) => {
                        let path = format!("{}/{}", name.service, name.method);
                        table.exact.insert(path.as_str().into(), policy(path));
                    }
                }
            }
        }
        Some(table)
    }

    pub(crate) fn throttling(&self) -> Option<RetryThrottling> {
        self.throttling
    }
}

// === impl MethodConfig ===

impl MethodConfig {
    /// Policies for the methods `names` lists, none set yet.
    pub fn new(names: impl IntoIterator<Item = MethodName>) -> Self {
        MethodConfig {
            names: names.into_iter().collect(),
            timeout: None,
            retry: None,
            hedge: None,
        }
    }

    /// The longest a call may take, all attempts included, when the caller set no
    /// shorter deadline (`grpc-timeout`, the channel's
    /// [`timeout`](super::BalancedChannelBuilder::timeout)). Zero is a
    /// configuration error at `build()`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Retries calls that fail as `policy` says. A method has a retry policy or a
    /// hedging policy, not both (a configuration error at `build()`).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Hedges calls as `policy` says.
    pub fn hedge(mut self, policy: HedgingPolicy) -> Self {
        self.hedge = Some(policy);
        self
    }
}

// === impl MethodName ===

impl MethodName {
    /// One method: `service` is the full name (`package.Service`).
    pub fn method(service: impl Into<String>, method: impl Into<String>) -> Self {
        MethodName {
            service: service.into(),
            method: method.into(),
        }
    }

    /// Every method of `service` (`package.Service`).
    pub fn service(service: impl Into<String>) -> Self {
        MethodName::method(service, "")
    }

    /// Every method of the channel that no more specific name matches.
    pub fn all() -> Self {
        MethodName::method("", "")
    }
}

impl fmt::Display for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.service.is_empty(), self.method.is_empty()) {
            (true, _) => f.write_str("the default method config"),
            (false, true) => write!(f, "service `{}`", self.service),
            (false, false) => write!(f, "method `{}/{}`", self.service, self.method),
        }
    }
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// Up to `max_attempts` attempts in all (2 to 5; more is treated as 5, as gRFC A6
    /// says), retrying the calls that fail with one of `retryable` codes. Backoff:
    /// 100 ms, doubling, at most 1 s; see [`backoff`](Self::backoff).
    pub fn new(max_attempts: u32, retryable: impl IntoIterator<Item = Code>) -> Self {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            codes: CodeSet::of(retryable),
        }
    }

    /// The backoff before the first retry, the most it may grow to, and what it is
    /// multiplied by at each retry (all positive). Each retry waits a random time
    /// up to the current backoff.
    pub fn backoff(mut self, initial: Duration, max: Duration, multiplier: f64) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self.multiplier = multiplier;
        self
    }

    /// The error names the field, for the caller to prefix.
    fn validate(&self) -> Result<(), String> {
        if self.max_attempts < 2 {
            return Err(format!(
                "maxAttempts: {} (must be at least 2)",
                self.max_attempts
            ));
        }
        if self.initial_backoff.is_zero() {
            return Err("initialBackoff: must be positive".into());
        }
        if self.max_backoff.is_zero() {
            return Err("maxBackoff: must be positive".into());
        }
        if !(self.multiplier.is_finite() && self.multiplier > 0.0) {
            return Err(format!(
                "backoffMultiplier: {} (must be positive)",
                self.multiplier
            ));
        }
        if self.codes.is_empty() {
            return Err("retryableStatusCodes: must name at least one code".into());
        }
        Ok(())
    }

    /// The bound of the random wait before retry `n` (0 for the first).
    pub(crate) fn backoff_bound(&self, n: u32) -> Duration {
        let factor = self.multiplier.powi(n.min(64) as i32);
        let bound = self.initial_backoff.as_secs_f64() * factor;
        if bound.is_finite() && bound < self.max_backoff.as_secs_f64() {
            Duration::from_secs_f64(bound)
        } else {
            self.max_backoff
        }
    }

    pub(crate) fn retries(&self, code: Code) -> bool {
        self.codes.contains(code)
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("multiplier", &self.multiplier)
            .field("retryable", &self.codes)
            .finish()
    }
}

// === impl HedgingPolicy ===

impl HedgingPolicy {
    /// Up to `max_attempts` attempts in all (2 to 5; more is treated as 5), one
    /// more after each `delay` without an answer (zero sends them all at once); a
    /// failure with one of the `non_fatal` codes sends the next at once instead of
    /// ending the call.
    pub fn new(
        max_attempts: u32,
        delay: Duration,
        non_fatal: impl IntoIterator<Item = Code>,
    ) -> Self {
        HedgingPolicy {
            max_attempts,
            delay: HedgeDelay::Fixed(delay),
            codes: CodeSet::of(non_fatal),
        }
    }

    /// The delay follows the method's latency: its `percentile` (above 0, below
    /// 100; e.g. 95) over the last seconds of calls (each attempt's time to its
    /// answer, older calls fading by half every 5 s), at least `floor` and at most
    /// `cap` (also the delay until 20 calls were measured). The delay in use is
    /// published as `tonic_discovery_balancer_hedge_delay_seconds`.
    pub fn adaptive_delay(mut self, percentile: f64, floor: Duration, cap: Duration) -> Self {
        self.delay = HedgeDelay::Percentile {
            percentile,
            floor,
            cap,
        };
        self
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_attempts < 2 {
            return Err(format!(
                "maxAttempts: {} (must be at least 2)",
                self.max_attempts
            ));
        }
        if let HedgeDelay::Percentile {
            percentile,
            floor,
            cap,
        } = self.delay
        {
            if !(percentile > 0.0 && percentile < 100.0) {
                return Err(format!(
                    "hedgingDelay: percentile {percentile} (must be above 0 and below 100)"
                ));
            }
            if cap.is_zero() || floor > cap {
                return Err(format!(
                    "hedgingDelay: floor {floor:?} and cap {cap:?} (the cap must be positive and at least the floor)"
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for HedgingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgingPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("delay", &self.delay)
            .field("non_fatal", &self.codes)
            .finish()
    }
}

// === impl RetryThrottling ===

impl RetryThrottling {
    /// A bucket of `max_tokens` (above 0, at most 1000) that each success refills by
    /// `token_ratio` (above 0; kept to three decimals, as gRPC does).
    pub fn new(max_tokens: u32, token_ratio: f32) -> Self {
        RetryThrottling {
            max_tokens,
            token_ratio,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.max_tokens) {
            return Err(format!(
                "maxTokens: {} (must be above 0 and at most 1000)",
                self.max_tokens
            ));
        }
        if !(self.token_ratio.is_finite() && self.token_ratio >= 0.001) {
            return Err(format!(
                "tokenRatio: {} (must be at least 0.001)",
                self.token_ratio
            ));
        }
        Ok(())
    }
}

/// The policies that apply to one method.
#[derive(Debug)]
pub(crate) struct Method {
    pub(crate) hedge: Option<HedgingPolicy>,
    /// The method's recent latency, for an adaptive hedging delay.
    pub(crate) latency: Option<LatencyWindow>,
    /// The name it was configured under, for metrics: `package.Service/Method`,
    /// `package.Service/*` or `*`.
    pub(crate) label: Box<str>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
    /// Its calls' attempts, for `attempts_total`.
    pub(crate) attempts: MethodCounter,
}

/// The method configs by name, for a call's path.
#[derive(Debug, Default)]
pub(crate) struct Methods {
    /// `package.Service/Method`.
    exact: HashMap<Box<str>, Arc<Method>>,
    services: HashMap<Box<str>, Arc<Method>>,
    default: Option<Arc<Method>>,
}

impl Methods {
    /// Whether some method has a retry policy (then request bodies are kept).
    pub(crate) fn any_retry(&self) -> bool {
        let mut all = self.exact.values().chain(self.services.values());
        all.any(|m| m.retry.is_some()) || self.default.as_ref().is_some_and(|m| m.retry.is_some())
    }

    /// The policies for a call to `path` (`/package.Service/Method`): the method's,
    /// else its service's, else the default, if any.
    pub(crate) fn lookup(&self, path: &str) -> Option<&Arc<Method>> {
        let path = path.strip_prefix('/').unwrap_or(path);
        self.exact
            .get(path)
            .or_else(|| {
                let service = path.split_once('/').map_or(path, |(s, _)| s);
                self.services.get(service)
            })
            .or(self.default.as_ref())
    }
}

/// The service config document, as gRPC defines its JSON.
mod json {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Document {
        #[serde(default)]
        pub(super) method_config: Vec<MethodConfigDoc>,
        pub(super) retry_throttling: Option<ThrottlingDoc>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct MethodConfigDoc {
        #[serde(default)]
        name: Vec<NameDoc>,
        timeout: Option<String>,
        retry_policy: Option<RetryDoc>,
        hedging_policy: Option<HedgingDoc>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct HedgingDoc {
        max_attempts: Option<u32>,
        hedging_delay: Option<String>,
        #[serde(default)]
        non_fatal_status_codes: Vec<Value>,
    }

    #[derive(Deserialize)]
    struct NameDoc {
        #[serde(default)]
        service: String,
        #[serde(default)]
        method: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RetryDoc {
        max_attempts: Option<u32>,
        initial_backoff: Option<String>,
        max_backoff: Option<String>,
        backoff_multiplier: Option<f64>,
        #[serde(default)]
        retryable_status_codes: Vec<Value>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct ThrottlingDoc {
        max_tokens: Option<u32>,
        token_ratio: Option<f32>,
    }

    impl MethodConfigDoc {
        pub(super) fn parse(self, at: &str) -> Result<MethodConfig, Error> {
            let names = self
                .name
                .into_iter()
                .map(|n| MethodName::method(n.service, n.method));
            let mut config = MethodConfig::new(names);
            if let Some(timeout) = self.timeout {
                config = config.timeout(duration(&timeout, &format!("{at}.timeout"))?);
            }
            if let Some(retry) = self.retry_policy {
                config = config.retry(retry.parse(&format!("{at}.retryPolicy"))?);
            }
            if let Some(hedge) = self.hedging_policy {
                config = config.hedge(hedge.parse(&format!("{at}.hedgingPolicy"))?);
            }
            Ok(config)
        }
    }

    impl HedgingDoc {
        fn parse(self, at: &str) -> Result<HedgingPolicy, Error> {
            let max_attempts = self
                .max_attempts
                .ok_or_else(|| Error::config(format!("{at}.maxAttempts: missing")))?;
            let delay = match self.hedging_delay {
                Some(d) => duration(&d, &format!("{at}.hedgingDelay"))?,
                None => Duration::ZERO,
            };
            let codes = codes(
                &self.non_fatal_status_codes,
                &format!("{at}.nonFatalStatusCodes"),
            )?;
            Ok(HedgingPolicy::new(max_attempts, delay, codes))
        }
    }

    /// Status codes by name or number; the error names the one that is neither.
    fn codes(values: &[Value], at: &str) -> Result<Vec<Code>, Error> {
        let mut codes = Vec::new();
        for (i, c) in values.iter().enumerate() {
            codes.push(code(c).ok_or_else(|| {
                Error::config(format!("{at}[{i}]: {c} is not a gRPC status code"))
            })?);
        }
        Ok(codes)
    }

    impl RetryDoc {
        fn parse(self, at: &str) -> Result<RetryPolicy, Error> {
            let missing = |field: &str| Error::config(format!("{at}.{field}: missing"));
            let max_attempts = self.max_attempts.ok_or_else(|| missing("maxAttempts"))?;
            let initial = self
                .initial_backoff
                .ok_or_else(|| missing("initialBackoff"))?;
            let max = self.max_backoff.ok_or_else(|| missing("maxBackoff"))?;
            let multiplier = self
                .backoff_multiplier
                .ok_or_else(|| missing("backoffMultiplier"))?;
            let codes = codes(
                &self.retryable_status_codes,
                &format!("{at}.retryableStatusCodes"),
            )?;
            Ok(RetryPolicy::new(max_attempts, codes).backoff(
                duration(&initial, &format!("{at}.initialBackoff"))?,
                duration(&max, &format!("{at}.maxBackoff"))?,
                multiplier,
            ))
        }
    }

    impl ThrottlingDoc {
        pub(super) fn parse(self) -> Result<RetryThrottling, Error> {
            let missing = |field: &str| Error::config(format!("retryThrottling.{field}: missing"));
            Ok(RetryThrottling::new(
                self.max_tokens.ok_or_else(|| missing("maxTokens"))?,
                self.token_ratio.ok_or_else(|| missing("tokenRatio"))?,
            ))
        }
    }

    /// A status code by its name (`"UNAVAILABLE"`) or number, as gRPC reads them.
    fn code(value: &Value) -> Option<Code> {
        let n = match value {
            Value::Number(n) => n.as_u64()?,
            Value::String(s) => CODES.iter().position(|name| name == s)? as u64,
            _ => return None,
        };
        (n < CODES.len() as u64).then(|| Code::from_i32(n as i32))
    }

    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];

    /// A duration in protobuf's JSON form: seconds with up to nine decimals and an
    /// `s` (`"1s"`, `"0.25s"`).
    pub(super) fn duration(s: &str, at: &str) -> Result<Duration, Error> {
        let bad = || {
            Error::config(format!(
                "{at}: `{s}` is not a duration such as \"0.1s\" (seconds, up to nine decimals)"
            ))
        };
        let digits = s.strip_suffix('s').ok_or_else(bad)?;
        let (secs, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if secs.is_empty() || !all_digits(secs) || !all_digits(frac) || frac.len() > 9 {
            return Err(bad());
        }
        if digits.ends_with('.') {
            return Err(bad());
        }
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        let nanos: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().map_err(|_| bad())?
        };
        Ok(Duration::new(secs, nanos))
    }
}

#[cfg(test)]
#[path = "service_config_tests.rs"]
mod tests;
