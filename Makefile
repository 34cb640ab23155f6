# The two entry points: `make run` (a local etcd and a guided demo) and
# `make test` (every check CI runs). Both install what is missing first.

.PHONY: run test deps build

deps:
	@scripts/install-deps.sh

build: deps
	cargo build --workspace --all-features --examples --bins

run: build
	@scripts/demo.sh

test:
	@scripts/install-deps.sh --test
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	cargo test --workspace --all-features
