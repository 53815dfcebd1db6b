//! The Echo service's generated code is committed (so that building the crate needs no
//! `protoc`); this test regenerates it with a vendored `protoc` and compares.
//!
//! Run with `REGENERATE_PROTO=1` to rewrite the committed file after changing
//! `proto/echo.proto`.

use std::path::Path;

const COMMITTED: &str = "testkit/src/pb/echo.v1.rs";

#[test]
fn generated_echo_code_is_up_to_date() {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    let out = tempfile::tempdir().expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_transport(false)
        .out_dir(out.path())
        .compile_with_config(
            config,
            &[root.join("proto/echo.proto")],
            &[root.join("proto")],
        )
        .expect("generate echo code");
    let fresh = std::fs::read_to_string(out.path().join("echo.v1.rs")).expect("read generated");
    let committed_path = root.join(COMMITTED);
    if std::env::var_os("REGENERATE_PROTO").is_some() {
        std::fs::write(&committed_path, &fresh).expect("write generated code");
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{COMMITTED} is stale: run `REGENERATE_PROTO=1 cargo test --all-features --test proto_codegen`"
    );
}
