#!/usr/bin/env bash
# Checks what the build and tests really need, one clear line for each
# failure (`make test` runs it; scripts/install-deps.sh installs the rest).
# A present `protoc` is not the check: it must compile a file importing the
# well-known types, as etcd-client's build script makes it do.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
failed=0
fail() { echo "check-deps: $*" >&2; failed=1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/probe.proto" <<'EOF'
syntax = "proto3";
package cfgd.probe;
import "google/protobuf/descriptor.proto";
import "google/protobuf/struct.proto";
message Probe {
  google.protobuf.FileDescriptorProto file = 1;
  google.protobuf.Struct fields = 2;
}
EOF
if ! command -v protoc >/dev/null 2>&1; then
  fail "protoc not found on PATH (Debian: protobuf-compiler)"
elif ! err=$(protoc -I "$tmp" --descriptor_set_out=/dev/null "$tmp/probe.proto" 2>&1); then
  fail "protoc cannot import google/protobuf/descriptor.proto and struct.proto (Debian: libprotobuf-dev): $(echo "$err" | head -n 1)"
fi

if ! command -v cc >/dev/null 2>&1; then
  fail "no C compiler (cc) on PATH (Debian: gcc)"
elif ! echo 'int main(void){return 0;}' | cc -x c -o "$tmp/a.out" - 2>/dev/null; then
  fail "cc cannot build a C program (Debian: libc6-dev)"
fi

for tool in etcd etcdctl curl; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found on PATH"
done
if [ "$mode" = "--test" ] || [ "$mode" = "--bench" ]; then
  for tool in node npm docker-compose; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found on PATH"
  done
  target/pyenv/bin/python -c 'import openfeature.contrib.tools.flagd.core, openfeature.contrib.provider.flagd' 2>/dev/null ||
    fail "target/pyenv lacks the Python flagd packages; run scripts/install-deps.sh --test"
  [ -x target/pyenv/bin/schemathesis ] && [ -x target/pyenv/bin/openapi-python-client ] && target/pyenv/bin/python -c 'import openapi_spec_validator' 2>/dev/null ||
    fail "target/pyenv lacks schemathesis, openapi-python-client or openapi-spec-validator; run scripts/install-deps.sh --test"
  v=$(target/etcd-3.5.1/etcd --version 2>/dev/null | head -n 1)
  case "$v" in
    *3.5.*) ;;
    *) fail "target/etcd-3.5.1/etcd missing or not etcd 3.5 (${v:-no output}); run scripts/install-deps.sh --test" ;;
  esac
fi
[ "$mode" = "--bench" ] && { command -v wrk >/dev/null 2>&1 || fail "wrk not found on PATH"; }
exit $failed
