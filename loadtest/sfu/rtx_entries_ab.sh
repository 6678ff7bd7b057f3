#!/usr/bin/env bash
# Interleaved A/B of relaycast builds, 200 viewers, for the compact retransmission entries
# (vendor/str0m/PATCHES.md, patch 3): for each round, each MODE and each DIR, one run of a
# release `relaycast` (no LL-HLS ladder: its encoder threads would share the two cores) and
# `relaycast-load` from DIR, printing the viewer and server lines (frame loss, CPU per packet,
# RSS per viewer). Modes: `sim` (three layers, viewers estimate bandwidth), `nosim` (one layer,
# no estimation), and the same with `:LOSS` appended (viewers drop LOSS % of incoming media,
# so NACKs and retransmissions run). Benchmark only (docs/benchmarks.md, "Compact
# retransmission entries").
#
# usage: loadtest/sfu/rtx_entries_ab.sh PORT DIR...
#        VIEWERS (default 200), DURATION (default 30s), ROUNDS (default 2),
#        MODES (default "nosim sim nosim:2"), SERVE_ARGS (more `relaycast serve` flags, e.g.
#        "--viewer-estimator remb"), MALLOC (an environment assignment for the server, e.g.
#        MALLOC_ARENA_MAX=2), LOAD_ARGS (more relaycast-load flags, e.g. "--warmup 45s")
set -euo pipefail
PORT=$1; shift
N=${VIEWERS:-200}; T=${DURATION:-30s}; ROUNDS=${ROUNDS:-2}; MODES=${MODES:-nosim sim nosim:2}
for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    layers=${mode%%:*}; loss=0
    [[ $mode == *:* ]] && loss=${mode#*:}
    sim=--simulcast; [[ $layers == nosim ]] && sim=--no-simulcast
    for R in "$@"; do
      D=$(mktemp -d /tmp/rtx-ab-XXXX)
      KEY=$("$R/relaycast" keys create load --data-dir "$D/data" 2>/dev/null)
      env ${MALLOC:-} "$R/relaycast" serve --data-dir "$D/data" --http-addr "127.0.0.1:$PORT" \
        --media-port 0 --public-ip 127.0.0.1 --hls-ladder none ${SERVE_ARGS:-} > "$D/serve.log" 2>&1 &
      PID=$!
      sleep 2
      "$R/relaycast-load" --url "http://127.0.0.1:$PORT" --stream load --key "$KEY" \
        --viewers "$N" --duration "$T" --server-pid "$PID" $sim --drop-percent "$loss" ${LOAD_ARGS:-} \
        > "$D/load.txt" 2>&1 || true
      kill "$PID"; wait "$PID" 2>/dev/null || true
      echo "== round $round, $mode: $R (load average $(cut -d' ' -f1-3 /proc/loadavg))"
      grep -E 'joined|lost frames|layer switches|steady|packets out|RSS start|impairment|server drops' \
        "$D/load.txt" || cat "$D/load.txt"
      rm -rf "$D"
    done
  done
done
