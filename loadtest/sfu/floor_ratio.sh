#!/usr/bin/env bash
# relaycast against the floor, in one sitting: first a release relaycast (no LL-HLS ladder,
# whose encoders would share the cores) with relaycast-load's default simulcast publisher and
# N bandwidth-estimating viewers, then `relaycast-load floor` with the same N: the same 720p
# packets, SRTP AES-128-GCM and GSO sends to N draining sockets and nothing else. Prints both
# and relaycast ÷ floor. Benchmark only (docs/benchmarks.md, "relaycast against the floor").
#
# usage: loadtest/sfu/floor_ratio.sh [VIEWERS] [SECONDS]
#   VIEWERS default 200; SECONDS: steady window of each run, default 30
#   RELEASE_DIR (default target/release) holds relaycast and relaycast-load
#   (cargo build --release --locked -p api -p relaycast-load); PORT (default 18490).
#
# relaycast's µs per packet is given two ways: per datagram it says it sent (its /metrics:
# RTP, RTCP, STUN) and per RTP datagram its viewers received; the floor counts the RTP
# datagrams it sent (its receivers drain them all unless the table shows loss). The ratio
# uses the second, which counts the same thing as the floor.
set -euo pipefail
N=${1:-200}; S=${2:-30}
R=$(realpath "${RELEASE_DIR:-target/release}")
PORT=${PORT:-18490}
D=$(mktemp -d /tmp/floor-ratio-XXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; true; }
trap cleanup EXIT

echo "floor_ratio: $N viewers, ${S} s each, files in $D; load average $(cut -d' ' -f1-3 /proc/loadavg)"
KEY=$("$R/relaycast" keys create load --data-dir "$D/data" 2>/dev/null)
"$R/relaycast" serve --data-dir "$D/data" --http-addr 127.0.0.1:$PORT --media-port 0 \
  --public-ip 127.0.0.1 --bind-ip 127.0.0.1 --hls-ladder none > "$D/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/metrics" && break; sleep 0.1; done
"$R/relaycast-load" --url "http://127.0.0.1:$PORT" --stream load --key "$KEY" --viewers "$N" \
  --duration "${S}s" --server-pid "$PID" --json > "$D/relaycast.json" 2> "$D/relaycast.txt" ||
  { tail -30 "$D/relaycast.txt"; exit 1; }
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
sleep 2
"$R/relaycast-load" floor --viewers "$N" --duration "${S}s" --json > "$D/floor.json" 2> "$D/floor.txt" ||
  { tail -30 "$D/floor.txt"; exit 1; }

grep -E '^  (steady|packets out|RTP packets|RSS)|frames by layer|joined|lost frames' "$D/relaycast.txt"
grep -vE '^\[OpenH264\]|^encoded|^floor: [0-9]+ viewers on' "$D/floor.txt"
echo
jq -rn --slurpfile r "$D/relaycast.json" --slurpfile f "$D/floor.json" '
  ($r[0].server.steady) as $w | $f[0] as $fl |
  def r3: . * 1000 | round / 1000;
  "                      µs CPU/packet   ms CPU/viewer-s   RTP pkt/viewer-s",
  "relaycast (per datagram out)  \($w.cpu_us_per_packet | r3)",
  "relaycast (per RTP received)  \($w.cpu_us_per_viewer_packet | r3)   \($w.cpu_ms_per_viewer_per_s | r3)   \($w.viewer_rtp_packets_per_s / $r[0].viewers.joined | r3)",
  "floor     (per RTP sent)      \($fl.cpu_us_per_packet | r3)   \($fl.cpu_ms_per_viewer_per_s | r3)   \($fl.packets_per_s / $fl.viewers | r3)",
  "relaycast ÷ floor: µs/packet \($w.cpu_us_per_viewer_packet / $fl.cpu_us_per_packet | r3), ms/viewer-s \($w.cpu_ms_per_viewer_per_s / $fl.cpu_ms_per_viewer_per_s | r3)"'
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
