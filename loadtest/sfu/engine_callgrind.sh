#!/usr/bin/env bash
# Instructions the SFU's engines spend per datagram they send, counted by callgrind in virtual
# time: sfu/tests/engine_instructions.rs (one publisher, VIEWERS str0m viewers on the sans-IO
# engines over a simulated network) runs twice, with FORWARD_SECONDS=0 and =N of forwarding after
# the warm-up, collecting only inside `Engine`'s entry points (the simulation's str0m clients
# are left out); the difference of the two counts over the difference of the datagrams sent is
# the cost of forwarding one datagram, joins and warm-up excluded. Deterministic for a build and
# its settings, whatever else the machine is running: for A/B comparisons of builds.
# Benchmark only (docs/benchmarks.md).
#
# usage: loadtest/sfu/engine_callgrind.sh TEST_BINARY...
#        TEST_BINARY: the engine_instructions test binary of a build, e.g. from
#          cargo test --release --locked -p sfu --test engine_instructions --no-run
#        environment: VIEWERS (20), WARMUP (10), FORWARD_SECONDS (10), SIMULCAST (1),
#          ESTIMATOR (twcc|remb)
set -euo pipefail
export VIEWERS=${VIEWERS:-20} WARMUP=${WARMUP:-10} SIMULCAST=${SIMULCAST:-1} ESTIMATOR=${ESTIMATOR:-twcc}
N=${FORWARD_SECONDS:-10}
D=$(mktemp -d /tmp/engine-cg-XXXX)
run() { # binary seconds tag -> "Ir datagrams"
  local out="$D/$3.out"
  FORWARD_SECONDS=$2 valgrind --tool=callgrind --callgrind-out-file="$out" --collect-atstart=no \
    --toggle-collect='sfu::engine::Engine::handle_datagram' \
    --toggle-collect='sfu::engine::Engine::handle_timeout' \
    --toggle-collect='sfu::engine::Engine::handle_command' \
    --toggle-collect='sfu::engine::Engine::poll_output' \
    "$1" --ignored --nocapture --test-threads 1 > "$D/$3.log" 2>&1
  local ir dg
  ir=$(grep -m1 '^totals:' "$out" | awk '{print $2}')
  dg=$(grep -o 'datagrams out: [0-9]*' "$D/$3.log" | awk '{print $3}')
  echo "$ir $dg"
}
i=0
for bin in "$@"; do
  i=$((i + 1))
  read -r ir0 dg0 < <(run "$bin" 0 "$i-0")
  read -r ir1 dg1 < <(run "$bin" "$N" "$i-$N")
  frames=$(grep -o 'frames at the viewers.*' "$D/$i-$N.log")
  python3 -c "import sys; ir0,dg0,ir1,dg1=map(int,sys.argv[1:5]); print(f'{sys.argv[5]}: {(ir1-ir0)/(dg1-dg0):,.0f} instructions per datagram sent ({dg1-dg0:,} datagrams in the window; {sys.argv[6]})')" \
    "$ir0" "$dg0" "$ir1" "$dg1" "$bin" "$frames"
done
if [ -n "${KEEP:-}" ]; then echo "callgrind files: $D"; else rm -rf "$D"; fi
