#!/usr/bin/env bash
# `make run`: starts `cfgd dev` (a throwaway etcd plus the cfgd server on
# it, seeded with examples) and walks through cfgd with cfgctl, curl and the
# examples. In a terminal it then keeps everything up for you to try
# commands until Ctrl-C; otherwise (CI, a pipe) it cleans up and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug
dir=target/run
rm -rf "$dir"
mkdir -p "$dir"

# cfgd dev picks free ports and prints its URLs; it removes its etcd and
# data when it gets SIGINT.
"$bin/cfgd" dev >"$dir/dev.out" 2>"$dir/dev.log" &
dev_pid=$!
# Only the processes this script started are stopped, by their pids.
children=("$dev_pid")
stop_children() {
  local pid
  kill -INT "$dev_pid" 2>/dev/null || true
  for pid in "${children[@]:1}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${children[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_children EXIT
trap 'exit 130' INT TERM

endpoint="" server=""
for _ in $(seq 300); do
  endpoint=$(awk '/^cfgd dev: etcd/ {print $4}' "$dir/dev.out")
  server=$(awk '/^cfgd dev: server/ {print $4}' "$dir/dev.out")
  # The gRPC line is printed last.
  [ -n "$server" ] && grep -q '^cfgd dev: gRPC' "$dir/dev.out" && break
  kill -0 "$dev_pid" 2>/dev/null || { echo "demo: cfgd dev failed:"; cat "$dir/dev.log"; exit 1; }
  sleep 0.1
done
[ -n "$server" ] || { echo "demo: cfgd dev did not start:"; cat "$dir/dev.log"; exit 1; }

export CFGCTL_ENDPOINTS="$endpoint" CFGCTL_NAMESPACE=demo
bold="" plain=""
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
step() { printf '\n%s# %s%s\n' "$bold" "$1" "$plain"; }
# Echo a command the way it could be pasted back into a shell.
quote() {
  local out="" a
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=@-]+$ ]]; then out+="$a "; else out+="'$a' "; fi
  done
  printf '%s' "${out% }"
}
show() { printf '$ %s\n' "$(quote "$@")"; "$@"; }
ctl() { show cfgctl "$@"; }
cfgctl() { "$bin/cfgctl" "$@"; }

echo "cfgd dev is running: etcd $(etcd --version | head -n 1 | awk '{print $3}') at $endpoint, the cfgd server at $server (auth off)"
echo "The web console: $server/ui/ (open it in a browser)"
grpc=$(awk '/^cfgd dev: gRPC/ {print $4}' "$dir/dev.out")
echo "flagd providers (gRPC sync and evaluation, namespace demo): $grpc"
step "Store a JSON value; the answer is its etcd revision"
ctl set database.config '{"url": "postgres://db.internal/app", "pool_size": 20}'
step "Read it back, as JSON or as a table"
ctl get database.config
ctl get database.config -o table
step "Change it twice, then look at its history"
ctl set database.config '{"url": "postgres://db.internal/app", "pool_size": 30}' -o table
ctl set database.config '{"url": "postgres://db.internal/app", "pool_size": 5}' -o table
ctl history database.config -o table
first=$(cfgctl history database.config | awk '/"revision"/ {gsub(/[^0-9]/, ""); r=$0} END {print r}')
step "Roll back to the first value (a new revision: history is never rewritten)"
ctl rollback database.config --to "$first" -o table
ctl get database.config
step "Compare-and-set: a write that expects an old revision is refused (exit code 4)"
show cfgctl set database.config '{"pool_size": 1}' --if-revision "$first" || echo "(exit code $?)"
step "etcd's own tool sees the same data"
show etcdctl --endpoints "$endpoint" get /cfgd/demo/config/database.config --print-value-only
step "The Rust quickstart example: get_or falls back, then reads what set stored"
CFGD_ENDPOINTS="$endpoint" show "$bin/examples/quickstart"

step "Live values: a service watching feature.flags (examples/live_flags.rs) and cfgctl watch"
# Wait until a file has at least $2 lines (the processes below print as they go).
wait_lines() {
  for _ in $(seq 100); do
    [ "$(wc -l <"$1")" -ge "$2" ] && return
    sleep 0.05
  done
}
CFGD_ENDPOINTS="$endpoint" CFGD_NAMESPACE=demo "$bin/examples/live_flags" >"$dir/flags.out" 2>&1 &
children+=("$!")
"$bin/cfgctl" watch feature --count 2 >"$dir/watch.out" 2>"$dir/watch.err" &
children+=("$!")
wait_lines "$dir/flags.out" 1
wait_lines "$dir/watch.err" 1
ctl set feature.flags '{"dark_mode": true}'
ctl set feature.flags '{"dark_mode": true, "new_checkout": true}'
wait_lines "$dir/flags.out" 3
wait_lines "$dir/watch.out" 2
sed 's/^/  live_flags   | /' "$dir/flags.out"
sed 's/^/  cfgctl watch | /' "$dir/watch.out"
step "Layers: demo-eu extends demo and keeps only what differs; explain says where each field came from (docs/layers.md)"
ctl ns set demo-eu --extends demo
ctl -n demo-eu set database.config '{"pool_size": 8}'
ctl -n demo-eu get database.config
ctl -n demo-eu get database.config --explain -o table
step "A gray release: an overlay only canary clients see, then promoted as one release"
ctl -n demo-eu overlay set canary --selector canary=true
ctl -n demo-eu overlay put canary database.config '{"pool_size": 12}'
ctl -n demo-eu get database.config --labels canary=true
ctl -n demo-eu overlay promote canary
ctl -n demo-eu get database.config
step "The HTTP server: REST with ETags, and flags over OFREP for any OpenFeature SDK"
show curl -s -i "$server/v1/namespaces/demo/config/database.config"
echo
show curl -s -X POST -H 'X-Cfgd-Namespace: demo' --data '{"context": {"targetingKey": "user-42"}}' "$server/ofrep/v1/evaluate/flags/new-checkout"
echo
step "cfgd-agent: the namespace as a file for a process that embeds nothing, re-rendered on change (docs/agent.md)"
cat >"$dir/agent.toml" <<EOF
server = "$server"
namespace = "demo"

[[template]]
prefix = "database."
format = "yaml"
destination = "$dir/database.yaml"
wait = { min = "100ms" }
EOF
sed 's/^/  /' "$dir/agent.toml"
"$bin/cfgd-agent" --config "$dir/agent.toml" --log-format text run 2>"$dir/agent.log" &
children+=("$!")
wait_for_file() {
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "demo: cfgd-agent did not render $1:"; cat "$dir/agent.log"; exit 1
}
wait_for_file "$dir/database.yaml" "pool_size"
show cat "$dir/database.yaml"
ctl set database.config '{"url": "postgres://db/app", "pool_size": 40}'
wait_for_file "$dir/database.yaml" "pool_size: 40"
show cat "$dir/database.yaml"
step "A release scheduled 2 s ahead: the server (the elected worker) applies it, compare-and-set (docs/webhooks.md)"
printf '{"feature.banner": "winter sale"}\n' >"$dir/release.json"
ctl release apply "$dir/release.json" --at +2s
for _ in $(seq 50); do
  cfgctl schedule list | grep -q '"state": "applied"' && break
  sleep 0.1
done
ctl schedule list
ctl get feature.banner
step "The REST API as an OpenAPI 3.1 document, to generate clients from (docs/server.md)"
printf '$ curl -s %s | head -n 4\n' "$server/openapi.json"
curl -s "$server/openapi.json" >"$dir/openapi.json"
head -n 4 "$dir/openapi.json"
echo "  ... $(grep -c '^        "operationId"' "$dir/openapi.json") operations"
step "The web console, served by cfgd itself (open it in a browser)"
show curl -s -o /dev/null -w '%{http_code} %{content_type}\n' "$server/ui/"
echo "console: $server/ui/"
step "Export the namespace as one JSON document; import checks a document and writes only what differs"
ctl export
cfgctl export >"$dir/demo.json"
ctl import "$dir/demo.json" --dry-run -o table

if [ -t 0 ] && [ -t 1 ]; then
  printf '\n%s# Try it yourself%s (etcd and the server stay up until Ctrl-C)\n' "$bold" "$plain"
  echo "  export CFGCTL_ENDPOINTS=$endpoint CFGCTL_NAMESPACE=demo"
  echo "  $bin/cfgctl list -o table"
  echo "  $bin/cfgctl set feature.limits '{\"max\": 10}'"
  echo "  $bin/cfgctl watch            # one JSON line per change, until Ctrl-C"
  echo "  $bin/cfgctl --help"
  echo "  open $server/ui/ in a browser: the web console"
  sed -n '/^Try:/,$p' "$dir/dev.out"
  wait "$dev_pid"
else
  echo
  echo "demo done; cfgd dev stopped (run 'make run' in a terminal to keep it up and try commands)"
fi
