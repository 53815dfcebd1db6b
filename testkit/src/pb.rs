//! Code generated from `proto/echo.proto` (package `echo.v1`).
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    rust_2018_idioms,
    missing_debug_implementations
)]
include!("pb/echo.v1.rs");
