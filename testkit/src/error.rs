//! The test kit's error: what went wrong starting or driving a test server, with the
//! cause when there is one.

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error of the test kit (a server that would not start, a command that failed).
#[derive(Debug)]
pub struct Error {
    message: String,
    source: Option<BoxError>,
}

/// `Result` with the test kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            source: None,
        }
    }

    /// Something to fix on this machine or in the call: a missing binary, no free port.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(message)
    }

    /// A server that did not answer in time.
    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Error::new(message)
    }

    /// A request that could not be sent or answered.
    pub(crate) fn transport(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::new(message).with_source(source)
    }

    /// An answer that could not be read.
    pub(crate) fn decode(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::new(format!("decoding {}", message.into())).with_source(source)
    }

    /// A server that is not running.
    pub(crate) fn closed(message: impl Into<String>) -> Self {
        Error::new(message)
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
