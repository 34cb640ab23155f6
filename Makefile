# The two entry points: `make run` (a local etcd and a guided demo) and
# `make test` (every check CI runs). Both install what is missing first.
# `make bench` measures cfgd against its peers.

.PHONY: run test bench deps build

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
	# Benchmarks are not run by the tests, only built.
	cargo bench --workspace --all-features --no-run

# cfgd against its peers, side by side (see BENCHMARKS.md). Starts its own
# etcd on free ports.
bench:
	@scripts/install-deps.sh --bench
	cargo bench -p cfgd-bench --bench read
	cargo bench -p cfgd-bench --bench propagation
	cargo bench -p cfgd-bench --bench http
	cargo bench -p cfgd-bench --bench memory
	cargo bench -p cfgd-bench --bench sse
	cargo bench --bench flag_eval
	cargo bench -p cfgd-bench --bench report
