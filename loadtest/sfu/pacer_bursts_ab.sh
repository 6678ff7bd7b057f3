#!/usr/bin/env bash
# Interleaved A/B of relaycast builds with N simulcast (bandwidth-estimating) viewers, 30 s steady,
# no LL-HLS ladder (its encoder threads would share the two cores). Each DIR holds a release
# `relaycast` and `relaycast-load`; the builds run one after the other, ROUNDS times over, and
# each run prints relaycast-load's viewer and server lines (frame loss, CPU per packet, RSS per
# viewer). Benchmark only (docs/benchmarks.md, "Pacer bursts").
#
# usage: loadtest/sfu/pacer_bursts_ab.sh PORT DIR...
#        VIEWERS (default 200), DURATION (default 30s), ROUNDS (default 2)
set -euo pipefail
PORT=$1; shift
N=${VIEWERS:-200}; T=${DURATION:-30s}; ROUNDS=${ROUNDS:-2}
for round in $(seq "$ROUNDS"); do
  for R in "$@"; do
    D=$(mktemp -d /tmp/pacer-ab-XXXX)
    KEY=$("$R/relaycast" keys create load --data-dir "$D/data" 2>/dev/null)
    "$R/relaycast" serve --data-dir "$D/data" --http-addr "127.0.0.1:$PORT" --media-port 0 \
      --public-ip 127.0.0.1 --hls-ladder none > "$D/serve.log" 2>&1 &
    PID=$!
    sleep 2
    "$R/relaycast-load" --url "http://127.0.0.1:$PORT" --stream load --key "$KEY" --viewers "$N" \
      --duration "$T" --server-pid "$PID" > "$D/load.txt" 2>&1 || true
    kill "$PID"; wait "$PID" 2>/dev/null || true
    echo "== round $round: $R (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    grep -E 'joined|lost frames|steady|packets out|RSS start|delay added' "$D/load.txt" || cat "$D/load.txt"
    rm -rf "$D"
  done
done
