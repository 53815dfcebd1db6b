//! The crate's error type.
// Which constructors a build uses depends on the registries it has.
#![cfg_attr(not(all(feature = "consul", feature = "etcd")), allow(dead_code))]

use std::fmt;

/// A type-erased error, as tower and tonic use it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The errors of this crate.
///
/// Errors are opaque: ask what kind of failure it was with the `is_*` predicates
/// and walk [`std::error::Error::source`] for the cause.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    message: String,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Bad input from the user: names, addresses, durations, environment.
    Config,
    /// The registry could not be reached or the connection broke.
    Transport,
    /// The registry answered with a non-success status code.
    Status(u16),
    /// The registry answered with a body that could not be decoded.
    Decode,
    /// An operation ran out of time.
    Timeout,
    /// No instance of a service could take a request.
    Unavailable,
    /// A background task that served this handle has ended.
    Closed,
}

// === impl Error ===

impl Error {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(Kind::Config, message)
    }

    pub(crate) fn transport(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::new(Kind::Transport, message).with_source(source)
    }

    pub(crate) fn http_status(code: u16, message: impl Into<String>) -> Self {
        Error::new(Kind::Status(code), message)
    }

    pub(crate) fn decode(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::new(Kind::Decode, message).with_source(source)
    }

    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Error::new(Kind::Timeout, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Error::new(Kind::Unavailable, message)
    }

    pub(crate) fn closed(message: impl Into<String>) -> Self {
        Error::new(Kind::Closed, message)
    }

    #[allow(dead_code)]
    pub(crate) fn kind(&self) -> Kind {
        self.inner.kind
    }

    /// The input was invalid: a service name, an address, a duration, an environment
    /// variable or a file named in one. Nothing was sent over the network.
    pub fn is_config(&self) -> bool {
        self.inner.kind == Kind::Config
    }

    /// The registry could not be reached, or the connection to it broke.
    pub fn is_transport(&self) -> bool {
        self.inner.kind == Kind::Transport
    }

    /// The registry answered with an error status; see [`Error::status`].
    pub fn is_status(&self) -> bool {
        matches!(self.inner.kind, Kind::Status(_))
    }

    /// The registry answered 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.inner.kind == Kind::Status(404)
    }

    /// The registry's answer could not be decoded.
    pub fn is_decode(&self) -> bool {
        self.inner.kind == Kind::Decode
    }

    /// An operation ran out of time.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == Kind::Timeout
    }

    /// No instance could take the request.
    pub fn is_unavailable(&self) -> bool {
        self.inner.kind == Kind::Unavailable
    }

    /// The background task behind a handle has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.kind == Kind::Closed
    }

    /// The HTTP status code the registry answered with, if this is a status error.
    pub fn status(&self) -> Option<u16> {
        match self.inner.kind {
            Kind::Status(code) => Some(code),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("tonic_discovery::Error");
        d.field("kind", &self.inner.kind);
        d.field("message", &self.inner.message);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.kind {
            Kind::Config => write!(f, "invalid configuration: {}", self.inner.message),
            Kind::Transport => write!(f, "registry unreachable: {}", self.inner.message),
            Kind::Status(code) => write!(f, "registry answered {code}: {}", self.inner.message),
            Kind::Decode => write!(f, "undecodable registry answer: {}", self.inner.message),
            Kind::Timeout => write!(f, "timed out: {}", self.inner.message),
            Kind::Unavailable => write!(f, "unavailable: {}", self.inner.message),
            Kind::Closed => write!(f, "closed: {}", self.inner.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| &**e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_follow_kind() {
        let e = Error::http_status(404, "Unknown check ID \"x\"");
        assert!(e.is_status() && e.is_not_found());
        assert_eq!(e.status(), Some(404));
        assert!(!e.is_config());
        assert_eq!(
            e.to_string(),
            "registry answered 404: Unknown check ID \"x\""
        );

        let e = Error::config("service name `a_b` has an underscore");
        assert!(e.is_config() && e.status().is_none());
    }

    #[test]
    fn source_chain_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::transport("connect to 127.0.0.1:1", io);
        let source = std::error::Error::source(&e).expect("source");
        assert_eq!(source.to_string(), "refused");
    }
}
