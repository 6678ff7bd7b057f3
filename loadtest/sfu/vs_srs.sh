#!/usr/bin/env bash
# relaycast against SRS in one sitting, back to back: one 720p single-layer publisher
# (relaycast-load's, --no-simulcast) and N viewers on each server, with
#   (a) livewrk viewers (live777's load tool, webrtc-rs peers that decrypt and count), and
#   (b) relaycast-load's viewers (str0m peers that decrypt, depacketize and check every frame);
# each of the four runs on a freshly started server. For each server it prints µs of server
# CPU per RTP packet the viewers received, ms of server CPU per viewer-second, KiB of RSS
# per viewer (RSS with the viewers minus RSS with the publisher alone, / N), loss, and the
# ratios relaycast/SRS. Benchmark only (docs/benchmarks.md, "relaycast against SRS").
#
# usage: loadtest/sfu/vs_srs.sh SRS SRS_ROOT LIVEWRK [VIEWERS] [SECONDS]
#   SRS       the SRS 6 binary; SRS_ROOT its working directory (srs.conf: WHIP/WHEP and HTTP
#             API on 11985, RTC on UDP 18000, candidate 127.0.0.1)
#   LIVEWRK   live777's livewrk (with the patch that honours LIVEWRK_NO_DATACHANNEL: SRS
#             refuses data channels)
#   VIEWERS   default 200; SECONDS: steady window, default 30
#   RELEASE_DIR (default target/release) holds relaycast and relaycast-load
#   (cargo build --release --locked -p api -p relaycast-load); PORT (default 18480) is
#   relaycast's HTTP port.
#
# How each figure is counted:
#   (a) livewrk prints only totals over its whole run, so the server's CPU is taken over the
#       same span (livewrk start → the end of its --duration: ramp with the joins, steady seconds)
#       and divided by the packets livewrk received: its total plus those it dropped itself
#       (webrtc-rs logs "Failed to send RtpPacket to track … Full" for each packet its track
#       queue had no room for: received and decrypted, so sent by the server, but not in
#       livewrk's total). Viewer-seconds are livewrk's connected sessions × their mean
#       connected time. livewrk reports no loss: "delivered" is packets per viewer-second
#       over the publisher's packet rate (from the (b) run on the same server), an estimate
#       that counts the wait for the first keyframe (SRS) and the GOP replayed at join
#       (relaycast) too.
#   (b) relaycast-load --count-packets viewers: CPU over its steady window (all viewers up)
#       per RTP datagram its viewers received in that window; loss from the stamped frame
#       sequence numbers.
#   RSS: (a) sampled 2 s before livewrk's duration ends; (b) at the end of the steady window.
set -euo pipefail
SRS=$(realpath "$1"); SRS_ROOT=$(realpath "$2"); LIVEWRK=$(realpath "$3")
N=${4:-200}; S=${5:-30}
R=$(realpath "${RELEASE_DIR:-target/release}")
PORT=${PORT:-18480}
RAMP_MS=100                                  # livewrk's; relaycast-load ramps at the same rate
RAMP_S=$(( (N * RAMP_MS + 999) / 1000 ))
D=$(mktemp -d /tmp/vs-srs-XXXX)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; true; }
trap cleanup EXIT

cpu_s() { awk '{ print ($14 + $15) / 100 }' "/proc/$1/stat"; }   # utime + stime, USER_HZ 100
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

# start_server NAME TAG: starts it, sets SERVER_PID, WHIP, WHEP, KEY_ARGS.
start_server() {
  local stream="vs-$2-$$"
  case $1 in
    relaycast)
      rm -rf "$D/data"
      local key; key=$("$R/relaycast" keys create "$stream" --data-dir "$D/data" 2>/dev/null)
      "$R/relaycast" serve --data-dir "$D/data" --http-addr 127.0.0.1:$PORT --media-port 0 \
        --public-ip 127.0.0.1 --bind-ip 127.0.0.1 --hls-ladder none > "$D/relaycast-$2.log" 2>&1 &
      SERVER_PID=$!
      wait_http "http://127.0.0.1:$PORT/metrics"
      WHIP="http://127.0.0.1:$PORT/whip/$stream"; WHEP="http://127.0.0.1:$PORT/whep/$stream"
      KEY_ARGS=(--key "$key") ;;
    srs)
      ( cd "$SRS_ROOT" && exec "$SRS" -c srs.conf ) > "$D/srs-$2.log" 2>&1 &
      SERVER_PID=$!
      wait_http "http://127.0.0.1:11985/api/v1/versions"
      WHIP="http://127.0.0.1:11985/rtc/v1/whip/?app=live&stream=$stream"
      WHEP="http://127.0.0.1:11985/rtc/v1/whep/?app=live&stream=$stream"
      KEY_ARGS=() ;;
  esac
  sleep 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; sleep 2; }

# (a): publisher from relaycast-load (publish only), viewers from livewrk.
run_livewrk() {
  local name=$1 tag="$1-livewrk"
  start_server "$name" "$tag"
  "$R/relaycast-load" --whip-url "$WHIP" "${KEY_ARGS[@]}" --no-simulcast --viewers 0 \
    --duration $((RAMP_S + S + 20))s --settle 1s > "$D/$tag-publisher.txt" 2>&1 &
  local pub=$!
  for _ in $(seq 1 120); do grep -q 'publisher connected' "$D/$tag-publisher.txt" && break; sleep 0.5; done
  grep -q 'publisher connected' "$D/$tag-publisher.txt" || { cat "$D/$tag-publisher.txt"; exit 1; }
  sleep 2
  local rss0 cpu0 rss1 cpu1 t0 t1
  rss0=$(rss_kib "$SERVER_PID"); cpu0=$(cpu_s "$SERVER_PID"); t0=$(date +%s.%N)
  LIVEWRK_NO_DATACHANNEL=1 LIVE777_WEBRTC_ICE_UDP_ADDRS=127.0.0.1:0 "$LIVEWRK" whep --whep "$WHEP" \
    --sessions "$N" --ramp-ms $RAMP_MS --duration $((RAMP_S + S)) --ice-server "" > "$D/$tag.txt" 2>&1 &
  local lw=$!
  sleep $((RAMP_S + S - 2)); rss1=$(rss_kib "$SERVER_PID")
  # livewrk stops its sessions after --duration; its exit can take many seconds more (SRS:
  # its DELETEs fail), server CPU that no packet count matches: the CPU window ends with
  # livewrk's duration, not with its exit.
  sleep 2; cpu1=$(cpu_s "$SERVER_PID"); t1=$(date +%s.%N)
  wait $lw || true
  kill $pub 2>/dev/null; wait $pub 2>/dev/null || true
  stop_server
  local packets connected avg dropped
  packets=$(sed -n 's/.*Packets: \([0-9]*\),.*/\1/p' "$D/$tag.txt")
  dropped=$(grep -c 'Failed to send RtpPacket' "$D/$tag.txt" || true)
  connected=$(sed -n 's/.*Sessions: [0-9]* total, \([0-9]*\) connected.*/\1/p' "$D/$tag.txt")
  avg=$(sed -n 's/.*Avg connected duration: \([0-9.]*\)s.*/\1/p' "$D/$tag.txt")
  [ -n "$packets" ] && [ -n "$connected" ] && [ -n "$avg" ] || { tail -20 "$D/$tag.txt"; exit 1; }
  jq -n --arg server "$name" --argjson cpu "$(echo "$cpu1 - $cpu0" | bc -l)" \
    --argjson secs "$(echo "$t1 - $t0" | bc -l)" --argjson counted "$packets" --argjson dropped "$dropped" \
    --argjson connected "$connected" --argjson avg "$avg" --argjson n "$N" \
    --argjson rss0 "$rss0" --argjson rss1 "$rss1" '($counted + $dropped) as $packets | {
      server: $server, viewers: $n, connected: $connected, seconds: $secs, cpu_s: $cpu,
      packets: $packets, counted_by_livewrk: $counted, dropped_in_livewrk: $dropped,
      us_per_packet: ($cpu * 1e6 / $packets),
      ms_per_viewer_s: ($cpu * 1e3 / ($connected * $avg)),
      kib_per_viewer: (($rss1 - $rss0) / $n),
      packets_per_viewer_s: ($packets / ($connected * $avg))
    }' > "$D/$tag.json"
}

# (b): publisher and viewers from relaycast-load.
run_load() {
  local name=$1 tag="$1-load"
  start_server "$name" "$tag"
  "$R/relaycast-load" --whip-url "$WHIP" --whep-url "$WHEP" "${KEY_ARGS[@]}" --no-simulcast \
    --viewers "$N" --ramp-per-sec $((1000 / RAMP_MS)) --duration "${S}s" --server-pid "$SERVER_PID" \
    --count-packets viewers --json > "$D/$tag.json" 2> "$D/$tag.txt" || { tail -30 "$D/$tag.txt"; exit 1; }
  stop_server
}

echo "vs_srs: $N viewers, ${S} s steady, files in $D; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for server in relaycast srs; do run_livewrk $server; done
for server in relaycast srs; do run_load $server; done

echo
echo "(a) livewrk viewers (whole livewrk run, ${RAMP_S} s ramp included)"
printf '%-10s %9s %12s %14s %14s %10s %12s %12s\n' server connected 'µs/packet' 'ms/viewer-s' 'KiB/viewer' 'pkt/v-s' delivered 'livewrk drop'
for server in relaycast srs; do
  rate=$(jq '.server.steady.viewer_rtp_packets_per_s / .viewers.joined' "$D/$server-load.json")
  jq -r --argjson rate "$rate" '[.server, .connected, .us_per_packet, .ms_per_viewer_s, .kib_per_viewer,
      .packets_per_viewer_s, (100 * .packets_per_viewer_s / $rate), .dropped_in_livewrk]
    | "\(.[0]) \(.[1]) \(.[2]) \(.[3]) \(.[4]) \(.[5]) \(.[6]) \(.[7])"' "$D/$server-livewrk.json" |
    awk '{ printf "%-10s %9d %12.2f %14.3f %14.0f %10.1f %11.1f%% %12d\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
done
jq -rn --slurpfile r "$D/relaycast-livewrk.json" --slurpfile s "$D/srs-livewrk.json" '
  "relaycast/SRS   µs/packet \($r[0].us_per_packet / $s[0].us_per_packet * 1000 | round / 1000)   ms/viewer-s \($r[0].ms_per_viewer_s / $s[0].ms_per_viewer_s * 1000 | round / 1000)   KiB/viewer \($r[0].kib_per_viewer / $s[0].kib_per_viewer * 1000 | round / 1000)"'

echo
echo "(b) relaycast-load viewers (steady window, packets counted at the viewers)"
printf '%-10s %9s %12s %14s %14s %10s %10s %9s %13s\n' server joined 'µs/packet' 'ms/viewer-s' 'KiB/viewer' 'pkt/v-s' 'loss %' freezes 'delay p95 ms'
for server in relaycast srs; do
  jq -r --arg s "$server" '[$s, .viewers.joined, .server.steady.cpu_us_per_packet,
      .server.steady.cpu_ms_per_viewer_per_s, .server.rss_kib_per_viewer,
      (.server.steady.viewer_rtp_packets_per_s / .viewers.joined), .viewers.loss_percent,
      .viewers.freezes, .delay_ms.p95_ms, .server.steady.packets_counted_at]
    | "\(.[0]) \(.[1]) \(.[2]) \(.[3]) \(.[4]) \(.[5]) \(.[6]) \(.[7]) \(.[8]) \(.[9])"' "$D/$server-load.json" |
    awk '{ printf "%-10s %9d %12.2f %14.3f %14.0f %10.1f %10.3f %9d %13.1f   (counted at: %s)\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
done
jq -rn --slurpfile r "$D/relaycast-load.json" --slurpfile s "$D/srs-load.json" '
  [$r[0].server, $s[0].server] as [$a, $b] |
  "relaycast/SRS   µs/packet \($a.steady.cpu_us_per_packet / $b.steady.cpu_us_per_packet * 1000 | round / 1000)   ms/viewer-s \($a.steady.cpu_ms_per_viewer_per_s / $b.steady.cpu_ms_per_viewer_per_s * 1000 | round / 1000)   KiB/viewer \($a.rss_kib_per_viewer / $b.rss_kib_per_viewer * 1000 | round / 1000)"'
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
