#!/usr/bin/env bash
# Where the SSE bench's servers spend their CPU while a put reaches 10,000
# clients: runs one round of `--bench sse` and records each server child
# (cfgd, then the floor) with perf, then prints, for the puts only (the
# samples after the longest gap, which follows the clients connecting),
# the kernel and user-space sample counts and the hottest symbols.
#   bench/scripts/sse-profile.sh [--call-graph]
# With --call-graph, records cfgd alone with DWARF call graphs and prints
# each function's inclusive share instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
graph=false
[ "${1:-}" = --call-graph ] && graph=true
cargo bench -p cfgd-bench --bench sse --no-run 2>/dev/null
bin=$(ls -t target/release/deps/sse-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
CFGD_BENCH_SSE_ROUNDS=1 "$bin" --bench >"$out/bench.txt" 2>&1 &
bench=$!
record() { # the child's mode variable, the output file, perf options
  local child=
  while [ -z "$child" ]; do
    for p in $(pgrep -f "$(basename "$bin")"); do
      tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -q "^$1=" && child=$p
    done
    kill -0 "$bench" 2>/dev/null || return 0
    sleep 0.05
  done
  perf record -F 999 "${@:3}" -p "$child" -o "$2" 2>/dev/null || true
}
if $graph; then
  record CFGD_BENCH_SSE_SERVER "$out/cfgd.data" --call-graph dwarf,8192
else
  record CFGD_BENCH_SSE_SERVER "$out/cfgd.data"
  record CFGD_BENCH_SSE_FLOOR "$out/floor.data"
fi
wait "$bench"
grep '^SSE' "$out/bench.txt"
for server in cfgd floor; do
  [ -f "$out/$server.data" ] || continue
  perf script -i "$out/$server.data" -F time,ip,sym 2>/dev/null >"$out/$server.txt"
  python3 - "$out/$server.txt" "$server" "$graph" <<'PY'
import collections, re, sys
path, server, graph = sys.argv[1], sys.argv[2], sys.argv[3] == "true"
def clean(symbol):
    symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol.strip())
    return re.sub(r"::h[0-9a-f]{16}$", "", symbol)
samples, current = [], None
for line in open(path):
    if graph:
        if not line.strip():
            if current: samples.append(current)
            current = None
            continue
        m = re.match(r"\s*([\d.]+):\s*$", line)
        if m:
            current = (float(m.group(1)), [])
            continue
        m = re.match(r"\s*([0-9a-f]+)\s+(.*)", line)
        if m and current is not None:
            current[1].append((m.group(1), clean(m.group(2))))
    else:
        m = re.match(r"\s*([\d.]+):\s+([0-9a-f]+)\s+(.*)", line)
        if m:
            samples.append((float(m.group(1)), [(m.group(2), clean(m.group(3)))]))
if current: samples.append(current)
times = [t for t, _ in samples]
gap = max(range(len(times) - 1), key=lambda i: times[i + 1] - times[i])
puts = [stack for _, stack in samples[gap + 1:] if stack]
kernel = sum(1 for stack in puts if stack[0][0].startswith("ffff"))
print(f"== {server}: {len(puts)} samples during the puts, kernel {kernel}, user {len(puts) - kernel}")
counts = collections.Counter()
for stack in puts:
    if graph:
        for name in {name for _, name in stack}: counts[name] += 1
    elif not stack[0][0].startswith("ffff"):
        counts[stack[0][1]] += 1
for name, n in counts.most_common(40):
    print(f"{n:6} {name[:150]}")
PY
done
rm -rf "$out"
