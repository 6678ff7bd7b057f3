#!/usr/bin/env bash
# Server heap by allocation site under heaptrack, per relaycast build: N simulcast viewers
# (default 100), 15 s steady, no LL-HLS ladder; prints the heap peak and the peak bytes
# allocated through str0m's retransmission cache (frames in rtx_cache), each per viewer.
# Benchmark only (docs/benchmarks.md, "Compact retransmission entries").
#
# usage: loadtest/sfu/rtx_heaptrack.sh PORT DIR...   (DIR holds relaycast and relaycast-load)
#        VIEWERS (default 100), MODE (--simulcast or --no-simulcast, default --simulcast)
set -euo pipefail
PORT=$1; shift
N=${VIEWERS:-100}; MODE=${MODE:---simulcast}
for R in "$@"; do
  D=$(mktemp -d /tmp/rtx-heap-XXXX)
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
  # Collapsed stacks "frame;frame;... bytes" at the heap peak; the RTX cache's are those
  # through a frame in str0m's rtx_cache.
  awk -v n="$N" '{ b = $NF; all += b; if ($0 ~ /rtx_cache/) rtx += b }
    END { printf "  heap at peak %.1f KB per viewer, of it through the RTX cache %.1f KB\n", all / n / 1000, rtx / n / 1000 }' "$D/stacks.txt"
  rm -rf "$D"
done
