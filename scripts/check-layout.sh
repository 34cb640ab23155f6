#!/usr/bin/env bash
# The layout the crate docs promise, checked: no file under a crate's src/
# over 600 lines, no console file over 400, and no import cycle between
# the files of a crate (scripts/check-cycles.py).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
while read -r lines file; do
  [ "$file" = total ] && continue
  if [ "$lines" -gt 600 ]; then
    echo "check-layout: $file has $lines lines (at most 600: split it by job)" >&2
    status=1
  fi
done < <(find crates -path '*/src/*' -name '*.rs' -print0 | xargs -0 wc -l)
while read -r lines file; do
  [ "$file" = total ] && continue
  if [ "$lines" -gt 400 ]; then
    echo "check-layout: $file has $lines lines (at most 400)" >&2
    status=1
  fi
done < <(find crates/cfgd-server/ui -type f -print0 | xargs -0 wc -l)
python3 scripts/check-cycles.py crates/*/src || status=1
exit $status
