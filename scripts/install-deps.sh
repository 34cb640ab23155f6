#!/usr/bin/env bash
# Installs what cfgd needs to build and test and is not there yet:
#   protoc   - etcd-client compiles etcd's .proto files at build time
#   etcd     - the tests and `make run` start real etcd processes
#   etcdctl  - the interop tests check that etcd's own tool sees our data
#   curl     - `make run` shows the HTTP server with it
# With --test, also:
#   node, npm - the differential test runs OpenFeature's reference flag
#               evaluator (tests/differential/), and the Node example
#               (examples/node/) is tested; both installed with `npm ci`
# With --bench, all of --test and:
#   wrk       - `make bench` loads the HTTP server and etcd's gateway with it
# Debian and Ubuntu get them from apt; elsewhere it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"

tools=(protoc etcd etcdctl curl)
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "$mode" = "--test" ] || [ "$mode" = "--bench" ]; then
  tools+=(node npm)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
if [ "$mode" = "--bench" ]; then
  tools+=(wrk)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi

npm_packages() {
  [ "$mode" = "--test" ] || [ "$mode" = "--bench" ] || return 0
  # The reference evaluator, at the versions package-lock.json pins.
  local dir
  for dir in tests/differential examples/node; do
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
      echo "install-deps: npm ci in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
}

if [ ${#missing[@]} -eq 0 ]; then
  npm_packages
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing ${missing[*]}." >&2
  echo "install-deps: install protoc and etcd 3.4 or newer (etcd and etcdctl on PATH), and for tests Node.js 18+ with npm, then retry." >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: need root (or sudo) to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  sudo=sudo
fi

echo "install-deps: installing ${missing[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-deps: $tool still missing after apt-get" >&2; exit 1; }
done
echo "install-deps: $(etcd --version | head -n 1), $(protoc --version)"
npm_packages
