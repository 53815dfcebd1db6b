//! placeholder
#![allow(missing_docs)]
mod backoff;
pub mod balance;
mod change;
#[cfg(feature = "consul")]
pub mod consul;
mod error;
mod instance;
#[cfg_attr(not(feature = "consul"), allow(dead_code))]
mod validate;
pub use backoff::Backoff;
pub use error::{BoxError, Error, Result};
pub use instance::{Instance, InstanceKey};
#[cfg(feature = "testkit")]
pub mod testkit;
