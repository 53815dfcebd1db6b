//! placeholder
#![allow(missing_docs)]
pub mod balance;
mod backoff;
mod change;
mod error;
mod instance;
#[cfg(feature = "consul")]
pub mod consul;
pub use backoff::Backoff;
pub use error::{BoxError, Error, Result};
pub use instance::{Instance, InstanceKey};
#[cfg(feature = "testkit")]
pub mod testkit;
