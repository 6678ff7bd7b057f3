#!/usr/bin/env bash
# Server heap by allocation site under heaptrack, per relaycast build: N viewers (default 100),
# 15 s steady, no LL-HLS ladder. Prints the heap at its peak per viewer, the part allocated
# through str0m's retransmission cache, and the peak bytes by owner: the innermost str0m, sfu or
# other crate function on each allocation's stack, cut to its module path (OWNER_DEPTH path
# segments, default 3), largest first.
# Benchmark only (docs/benchmarks.md, "Compact retransmission entries", "Where a viewer's memory
# is now").
#
# usage: loadtest/sfu/heaptrack_viewers.sh PORT DIR...   (DIR holds relaycast and relaycast-load)
#        VIEWERS (default 100), MODE (--simulcast or --no-simulcast, default --simulcast),
#        TOP (owners to print, default 25), KEEP=1 keeps the collapsed stacks (path printed)
set -euo pipefail
PORT=$1; shift
N=${VIEWERS:-100}; MODE=${MODE:---simulcast}
for R in "$@"; do
  D=$(mktemp -d /tmp/viewer-heap-XXXX)
  KEY=$("$R/relaycast" keys create load --data-dir "$D/data" 2>/dev/null)
  heaptrack -o "$D/ht" "$R/relaycast" serve --data-dir "$D/data" --http-addr "127.0.0.1:$PORT" \
    --media-port 0 --public-ip 127.0.0.1 --hls-ladder none > "$D/serve.log" 2>&1 &
  HT=$!
  sleep 3
  # The server itself, not heaptrack's wrapper (whose command line holds the server's).
  PID=$(pgrep -f -- "^$R/relaycast serve --data-dir $D/data")
  "$R/relaycast-load" --url "http://127.0.0.1:$PORT" --stream load --key "$KEY" --viewers "$N" \
    --duration 15s --server-pid "$PID" "$MODE" > "$D/load.txt" 2>&1 || true
  kill "$PID"; wait "$HT" 2>/dev/null || true
  F=$(ls "$D"/ht.* | head -1)
  heaptrack_print -f "$F" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    --print-leaks 0 --print-flamegraph "$D/stacks.txt" --flamegraph-cost-type peak \
    > "$D/summary.txt" 2>/dev/null || true
  echo "== $R: $N viewers $MODE"
  grep -E 'lost frames|RSS start' "$D/load.txt" || true
  # Collapsed stacks "frame;frame;... bytes" at the heap peak (outermost frame first).
  python3 - "$D/stacks.txt" "$N" "${OWNER_DEPTH:-3}" "${TOP:-25}" <<'PY'
import collections, re, sys
path, n, depth, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
skip = re.compile(r'^(alloc|core|std|hashbrown|__rust|<alloc|<core|<std|<hashbrown|smallvec|<smallvec)')
owners = collections.Counter()
total = rtx = 0
for line in open(path):
    stack, _, b = line.rstrip('\n').rpartition(' ')
    if not b.isdigit():
        continue
    b = int(b)
    total += b
    frames = stack.split(';')
    if any('rtx_cache' in f for f in frames):
        rtx += b
    owner = '?'
    for f in reversed(frames):
        f = f.lstrip('<').split(' as ')[0]
        name = re.sub(r'<.*', '', f)
        if '::' in name and not skip.match(name):
            owner = '::'.join(name.split('::')[:depth])
            break
    owners[owner] += b
print(f"  heap at peak {total / n / 1000:.1f} KB per viewer, of it through the RTX cache {rtx / n / 1000:.1f} KB")
for owner, b in owners.most_common(top):
    print(f"  {b / n / 1000:8.2f} KB  {owner}")
PY
  if [ -n "${KEEP:-}" ]; then echo "  stacks: $D/stacks.txt"; else rm -rf "$D"; fi
done
