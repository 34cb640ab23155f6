#!/usr/bin/env bash
# Checks the container build without a Docker engine (none runs in CI):
# - the Dockerfile's build stage installs Debian packages that really hold
#   protoc and the well-known .proto files etcd-client's build script
#   imports (read from the packages' own file lists, so a package that
#   stops shipping them, or one missing from the list, fails here);
# - docker-compose (Debian's docker-compose) accepts docker-compose.yml.
# One line per failure; `make test` runs it.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=0
fail() { echo "check-docker: $*" >&2; failed=1; }

# The apt-get install line of the stage named `build`.
packages=$(awk '
  /^FROM / { build = ($0 ~ / AS build$/) }
  build && /apt-get install/ { capture = 1 }
  capture { line = line " " $0; if ($0 !~ /\\$/) capture = 0 }
  END { print line }' Dockerfile |
  sed 's/.*apt-get install//; s/&&.*//; s/\\//g' | tr ' ' '\n' | grep -v '^-' | grep -v '^$')
if [ -z "$packages" ]; then
  fail "no apt-get install in the Dockerfile's build stage"
else
  files=""
  for pkg in $packages; do
    list=$(dpkg -L "$pkg" 2>/dev/null) || { fail "Dockerfile build stage: $pkg is not installed here to check (run scripts/install-deps.sh --test)"; continue; }
    files+="$list"$'\n'
  done
  for needed in /usr/bin/protoc /usr/include/google/protobuf/descriptor.proto /usr/include/google/protobuf/struct.proto; do
    grep -qx "$needed" <<<"$files" ||
      fail "the Dockerfile's build stage installs ($(echo $packages)) but none holds $needed; etcd-client's build would fail"
  done
fi

if ! command -v docker-compose >/dev/null 2>&1; then
  fail "docker-compose not found on PATH (Debian: docker-compose)"
elif ! err=$(docker-compose -f docker-compose.yml config -q 2>&1); then
  fail "docker-compose.yml does not validate: $(echo "$err" | head -n 3 | tr '\n' ' ')"
fi
exit $failed
