#!/usr/bin/env bash
# The project's test command: installs what the tests need when it is missing, then runs
# every check CI runs. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/descriptor.proto ] || need_apt+=(libprotobuf-dev)
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  else
    echo "missing ${need_apt[*]}: install them (Debian: apt-get install ${need_apt[*]})" >&2
  fi
fi

# The interop tests run a gRPC C-core server: Python's grpcio.
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "installing grpcio (pip install grpcio)"
  python3 -m pip install --quiet grpcio || echo "grpcio could not be installed: pip install grpcio" >&2
fi

# The Nacos tests run against rnacos, a Nacos server in Rust (about 10 minutes to build
# once on 2 cores; the binary lands in ~/.cargo/bin).
if ! command -v rnacos >/dev/null 2>&1; then
  echo "installing rnacos (cargo install rnacos --locked)"
  cargo install rnacos --locked --version 0.8.8 --quiet
fi

export CARGO_TERM_COLOR=never
# One build per run: incremental state would only take disk (it took more than the
# artifacts themselves).
export CARGO_INCREMENTAL=0
echo "== cargo fmt";    cargo fmt --all --check
echo "== cargo clippy"; cargo clippy --workspace --all-targets --all-features -- -D warnings
for f in consul etcd nacos dns health metrics tls-ring tls-webpki-roots; do
  echo "== cargo check --no-default-features --features $f"
  cargo check --no-default-features --features "$f"
done
# consul-dev, the Consul-compatible dev agent: its core alone and each feature alone.
echo "== cargo check -p consul-dev --no-default-features"
cargo check -p consul-dev --no-default-features
for f in grpc cli tls-ring; do
  echo "== cargo check -p consul-dev --no-default-features --features $f"
  cargo check -p consul-dev --no-default-features --features "$f"
done
# Each crate with its own feature resolution, as its users build it (consul-dev's tests
# must not lean on a TLS provider that only the library's features switch on).
echo "== cargo test";   cargo test --all-features
echo "== cargo test -p consul-dev"; cargo test -p consul-dev --all-features
echo "== cargo test -p tonic-discovery-testkit"; cargo test -p tonic-discovery-testkit
echo "== cargo bench --quick (the benchmark harness runs; timings are not checked)"
cargo bench --all-features --bench mesh -- --quick
echo "== cargo doc";    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
# Both crates package: each ships its sources, README, CHANGELOG and both licences, and
# none of the tests, benches, examples, results, scripts or CI files. --no-verify: a
# verification builds each package from its tarball with its default features, which
# rebuilds much of the dependency tree (measured: 6.5 min on the shared 2-core machine,
# against 5 s without) for sources that clippy and the feature checks above have just
# compiled; the packaging itself (include lists, the rewritten manifest without the path
# dev-dependencies, the lockfile) still runs and fails on a broken package.
echo "== cargo package"
for krate in tonic-discovery consul-dev; do
  list=$(cargo package -p "$krate" --list --allow-dirty)
  for f in Cargo.toml README.md CHANGELOG.md LICENSE-MIT LICENSE-APACHE src/lib.rs; do
    grep -qx "$f" <<<"$list" || { echo "$krate: the package lacks $f" >&2; exit 1; }
  done
  if grep -E '^(tests|benches|examples|scripts|proptest-regressions|\.ci)/' <<<"$list"; then
    echo "$krate: the package ships the files above" >&2
    exit 1
  fi
done
cargo package --workspace --exclude tonic-discovery-testkit --no-verify --allow-dirty --quiet
echo "== disk: $(du -sh target 2>/dev/null | cut -f1) in target/; $(df -h . | awk 'NR==2 {print $4}') free"
