# The two entry points: `make run` (a local etcd and a guided demo) and
# `make test` (every check CI runs). Both install what is missing first.
# `make bench` measures cfgd against its peers.

.PHONY: run test bench fuzz soak deps build

deps:
	@scripts/install-deps.sh

build: deps
	cargo build --workspace --all-features --examples --bins

run: build
	@scripts/demo.sh

# The etcd-backed suites run twice: against Debian's etcd 3.4 on PATH, then
# against etcd 3.5 (fetched by install-deps), which the test harness takes
# from CFGD_TEST_ETCD; PATH covers `cfgd dev` and etcdctl.
ETCD35 := $(CURDIR)/target/etcd-3.5.1

test:
	@scripts/install-deps.sh --test
	@scripts/check-docker.sh
	@target/pyenv/bin/python scripts/check-kubernetes.py
	@scripts/check-layout.sh
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	@scripts/check-fresh-app.sh
	# The soak test (faults under load, ~25 s) runs in the second pass only,
	# against etcd 3.5, what production clusters run.
	cargo test --workspace --all-features -- --skip soak::
	# The second pass leaves out the browser tests (the console's, SSO's),
	# the schemathesis run,
	# the manifests' check and the 30 s receiver outage: they exercise the
	# page, the HTTP API's shapes, deploy/kubernetes/ and a webhook
	# receiver, not etcd. `--tests` (every test target) selects
	# what the first pass built, features and all; naming test targets
	# instead unified dependencies' features differently and rebuilt the
	# workspace (a minute and a half).
	PATH="$(ETCD35):$$PATH" CFGD_TEST_ETCD="$(ETCD35)/etcd" \
		cargo test --workspace --all-features --tests -- --skip console:: --skip schemathesis:: --skip kubernetes:: --skip webhooks::a_receiver_down_for_30_seconds --skip oidc::sso_with_a_real_provider
	# Benchmarks are not run by the tests: clippy's --all-targets above
	# type-checks them (linking them too took most of a minute; `make bench`
	# builds them).

# cfgd against its peers, side by side (see BENCHMARKS.md). Starts its own
# etcd on free ports.
bench:
	@scripts/install-deps.sh --bench
	cargo bench -p cfgd-bench --bench read
	cargo bench -p cfgd-bench --bench propagation
	cargo bench -p cfgd-bench --bench http
	cargo bench -p cfgd-bench --bench memory
	cargo bench -p cfgd-bench --bench sse
	cargo bench -p cfgd-bench --bench write
	cargo bench -p cfgd-bench --bench flagd
	cargo build --release -p cfgctl
	cargo bench -p cfgd-bench --bench export
	cargo bench -p cfgd-bench --bench flag_eval
	cargo bench -p cfgd-bench --bench layers
	cargo build --release -p cfgd-server -p cfgd-agent
	cargo bench -p cfgd-bench --bench agent
	cargo bench -p cfgd-bench --bench webhooks
	cargo bench -p cfgd-bench --bench report

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer): every target for
# FUZZ_SECONDS (30) each; prints executions per target, and keeps a crash's
# input in fuzz/regressions/ for `make test`.
fuzz:
	@scripts/install-deps.sh --fuzz
	@scripts/fuzz.sh

# Three cfgd replicas on a 3-member etcd cluster under load (REST writers,
# 1,000 SSE clients, OFREP evaluators, library subscribers), through a
# replica kill and an etcd leader kill, for about 3 minutes. Prints a report
# and fails if any change is lost, repeated or out of order. `make test`
# runs a short version of the same test.
SOAK_SECONDS ?= 180
SOAK_SSE ?= 1000
SOAK_WRITES_PER_SEC ?= 50
soak: deps
	@scripts/install-deps.sh --test
	CFGD_SOAK_SECONDS=$(SOAK_SECONDS) CFGD_SOAK_SSE=$(SOAK_SSE) CFGD_SOAK_WRITES_PER_SEC=$(SOAK_WRITES_PER_SEC) \
		cargo test -p cfgd-server --all-features --test integration -- soak:: --nocapture
