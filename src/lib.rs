//! placeholder
#![allow(missing_docs)]
mod backoff;
pub mod balance;
mod change;
#[cfg(feature = "consul")]
pub mod consul;
mod error;
mod instance;
pub use backoff::Backoff;
pub use error::{BoxError, Error, Result};
pub use instance::{Instance, InstanceKey};
#[cfg(feature = "testkit")]
pub mod testkit;
