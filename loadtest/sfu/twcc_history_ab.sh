#!/usr/bin/env bash
# One 30 s run of N simulcast (bandwidth-estimating) viewers against a release relaycast
# started with --twcc-send-history HISTORY and no LL-HLS ladder (its encoder threads would
# share the two cores); prints relaycast-load's server lines (CPU per packet, RSS per viewer).
# Benchmark only (docs/benchmarks.md, "TWCC send history").
#
# usage: loadtest/sfu/twcc_history_ab.sh HISTORY PORT [VIEWERS]
#        RELEASE_DIR (default target/release) holds relaycast and relaycast-load
#        (cargo build --release --locked -p api -p relaycast-load)
set -euo pipefail
R=${RELEASE_DIR:-target/release}
H=$1; PORT=$2; N=${3:-200}
D=$(mktemp -d /tmp/twcc-ab-XXXX)
KEY=$($R/relaycast keys create load --data-dir $D/data 2>/dev/null)
$R/relaycast serve --data-dir $D/data --http-addr 127.0.0.1:$PORT --media-port 0 --public-ip 127.0.0.1 --twcc-send-history $H --hls-ladder none > $D/serve.log 2>&1 &
PID=$!
sleep 2
grep VmRSS /proc/$PID/status
$R/relaycast-load --url http://127.0.0.1:$PORT --stream load --key "$KEY" --viewers $N --duration 30s --server-pid $PID > $D/load.txt 2>&1 || true
kill $PID; wait $PID 2>/dev/null || true
echo "== history $H"; grep -iE 'rss|cpu|loss|viewers|per viewer|µs|us/pkt|packet' $D/load.txt | head -30
