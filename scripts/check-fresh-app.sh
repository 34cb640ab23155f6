#!/usr/bin/env bash
# A new user's first build: a fresh edition-2021 app outside the workspace,
# with README's quick start as its main.rs and cfgd by path, resolved
# without cfgd's lockfile (what `cargo add cfgd` gives), must build on this
# toolchain. Dependency bounds in crates/*/Cargo.toml exist for this check.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
app=$(mktemp -d)
trap 'rm -rf "$app"' EXIT
mkdir -p "$app/src"
cat > "$app/Cargo.toml" <<TOML
[package]
name = "fresh-app"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
cfgd = { path = "$repo/crates/cfgd" }
serde = { version = "1", features = ["derive"] }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }

[workspace]
TOML
# The first Rust block of README.md: the library's quick start.
awk '/^```rust/{on=1; next} on && /^```/{exit} on' README.md > "$app/src/main.rs"
[ -s "$app/src/main.rs" ] || { echo "check-fresh-app: README.md has no Rust block" >&2; exit 1; }
echo "check-fresh-app: building README's quick start as a fresh app ($(rustc --version))"
# The workspace's target dir: dependencies it already built are reused.
CARGO_TARGET_DIR="$repo/target" cargo build --quiet --manifest-path "$app/Cargo.toml"
echo "check-fresh-app: it builds; it resolved:"
grep -A1 '^name = "\(datalogic-rs\|etcd-client\|jsonschema\|tokio\|moka\)"' "$app/Cargo.lock" | grep -v '^--' | paste - - | sed 's/name = //; s/version = //'
