#!/usr/bin/env bash
# Where an idle SSE client's memory goes: a release cfgd under valgrind's
# massif, N idle SSE clients (2,000 by default), then the peak snapshot's
# allocation sites. Starts its own etcd on free ports and stops both.
#   cargo build --release -p cfgd-server --bin cfgd
#   bench/scripts/sse-heap.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-2000}"
dir=$(mktemp -d)
free() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
client=$(free) peer=$(free) http=$(free)
etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" --log-level error >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null; wait $etcd_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
sleep 2
printf 'no_auth = true\nmax_streams_per_token = 20000\n' >"$dir/cfgd.toml"
valgrind --tool=massif --massif-out-file="$dir/massif.out" --detailed-freq=4 \
    target/release/cfgd serve --listen "127.0.0.1:$http" --endpoints "http://127.0.0.1:$client" \
    --config "$dir/cfgd.toml" >"$dir/cfgd.out" 2>"$dir/cfgd.err" &
cfgd_pid=$!
for _ in $(seq 60); do grep -q listening "$dir/cfgd.out" && break; sleep 1; done
python3 - "$http" "$n" <<'PY'
import asyncio, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
async def one():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /v1/namespaces/prof/watch?prefix=app HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    await w.drain()
    assert b" 200 " in await r.readline()
    while await r.readline() not in (b"\r\n", b""):
        pass
    return w
async def main():
    held = []
    for i in range(0, n, 100):
        held += await asyncio.gather(*(one() for _ in range(min(100, n - i))))
    print(f"{len(held)} SSE clients connected")
    await asyncio.sleep(30)
asyncio.run(main())
PY
kill -INT "$cfgd_pid"
wait "$cfgd_pid" || true
# The peak snapshot's row and its allocation sites, by bytes per client.
ms_print "$dir/massif.out" >"$dir/report.txt"
peak=$(sed -n 's/.*Detailed snapshots: .*[[ ]\([0-9]*\) (peak).*/\1/p' "$dir/report.txt")
awk -v peak="$peak" -v n="$n" '
  $1 == peak && $2 ~ /[0-9,]+/ { on = 1; t = $3; gsub(/,/, "", t); printf "peak: %s bytes of heap, %.0f per client\n", $3, t / n; next }
  on && /^->/ { b = $2; gsub(/[(),B]/, "", b); printf "%7.0f B/client  %s\n", b / n, $0 }
  on && /^ *[0-9]+ +[0-9,]+ / { exit }' "$dir/report.txt"
