#!/usr/bin/env bash
# Instructions per packet of a release relaycast run under callgrind with N simulcast
# (bandwidth-estimating) viewers: instrumentation is switched on for 20 s once the viewers have
# joined, and the count is divided by the RTP packets sent in that window (calls to
# `SrtpContext::protect_rtp`). valgrind slows the server some 50 times, so keep N small (4) and
# read the numbers as an A/B of builds, not as the server's speed; they also count the
# publisher's ingest and the worker loop, shared by only N viewers here.
# Benchmark only (docs/benchmarks.md, "Pacer bursts").
#
# usage: loadtest/sfu/pacer_bursts_server_callgrind.sh DIR PORT [VIEWERS]
#        DIR holds a release `relaycast` and `relaycast-load`
#        MODE: relaycast-load's --simulcast (default) or --no-simulcast;
#        SERVE_ARGS: more `relaycast serve` flags; KEEP=1 keeps the callgrind file (path printed)
set -euo pipefail
R=$1; PORT=$2; N=${3:-4}
D=$(mktemp -d /tmp/pacer-cgsrv-XXXX)
KEY=$("$R/relaycast" keys create load --data-dir "$D/data" 2>/dev/null)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$D/callgrind.out" \
  "$R/relaycast" serve --data-dir "$D/data" --http-addr "127.0.0.1:$PORT" --media-port 0 \
  --public-ip 127.0.0.1 --hls-ladder none ${SERVE_ARGS:-} > "$D/serve.log" 2>&1 &
PID=$!
for _ in $(seq 60); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 1; done
"$R/relaycast-load" --url "http://127.0.0.1:$PORT" --stream load --key "$KEY" --viewers "$N" \
  --ramp-per-sec 4 --settle 5s --duration 40s "${MODE:---simulcast}" > "$D/load.txt" 2>&1 &
LOAD=$!
sleep 15
callgrind_control -i on "$PID" > /dev/null 2>&1
sleep 20
callgrind_control -i off "$PID" > /dev/null 2>&1
wait "$LOAD" || true
kill "$PID"; wait "$PID" 2>/dev/null || true
grep -E 'lost frames' "$D/load.txt" || cat "$D/load.txt"
python3 - "$D/callgrind.out" <<'EOF'
import collections, re, sys

calls = collections.Counter()
names = {}
callee = None
total = 0
for line in open(sys.argv[1]):
    if line.startswith('totals:'):
        total = int(line.split()[1])
    m = re.match(r'(c?)fn=\((\d+)\)(?: (.*))?', line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3)
        if m.group(1):
            callee = names.get(m.group(2))
        continue
    if line.startswith('calls='):
        calls[callee] += int(line.split('=')[1].split()[0])
packets = calls['str0m::rtp_::srtp::SrtpContext::protect_rtp']
print(f"Ir {total:,}   RTP packets {packets:,}   Ir per packet {total / packets:,.0f}   "
      f"Rtc::handle_input per packet {calls['str0m::Rtc::handle_input'] / packets:.2f}   "
      f"Rtc::poll_output per packet {calls['str0m::Rtc::poll_output'] / packets:.2f}")
EOF
if [ -n "${KEEP:-}" ]; then echo "callgrind file: $D/callgrind.out"; else rm -rf "$D"; fi
