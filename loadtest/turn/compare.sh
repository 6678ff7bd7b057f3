#!/usr/bin/env bash
# relaycast TURN vs coturn, on loopback only, in one run:
#   1. relay throughput and server CPU per relayed megabit: coturn's turnutils_uclient
#      (UDP, channels, REST credentials) echoing through turnutils_peer;
#   2. N allocations held at once (default 10,000) and server memory per allocation,
#      with turn-server's `hold_allocations` example.
# Each server runs alone while it is measured; the throughput runs are repeated REPS times,
# alternating which server goes first, and summarised (mean, min, max). Needs the Debian
# `coturn` package and
#   cargo build --release -p api --bin relaycast
#   cargo build --release -p turn-server --example hold_allocations
# RELAYCAST_EXAMPLE=path runs turn-server's loopback_turn example in place of `relaycast turn` (part 2
# needs the binary: the example keeps the default quotas).
# Tunables (env): CLIENTS MSGS LEN INTERVAL_MS REPS ALLOCS (0 skips part 2) TARGET_DIR.
set -euo pipefail

# shellcheck source=loadtest/turn/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HOLD=${HOLD:-$TARGET_DIR/release/examples/hold_allocations}
CLIENTS=${CLIENTS:-20}
# 20 x 20000 x 1000 B is several seconds of server CPU per run, so scheduling noise averages out.
MSGS=${MSGS:-20000}
REPS=${REPS:-3}
LEN=${LEN:-1000}
INTERVAL_MS=${INTERVAL_MS:-0}
ALLOCS=${ALLOCS:-10000}

require_tools turnutils_uclient turnutils_peer turnserver "${RELAYCAST_EXAMPLE:-$RELAYCAST}" "$HOLD"
ulimit -n "$(ulimit -Hn)"

TCK=$(getconf CLK_TCK)
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }

start_server() { # name → sets SERVER_PID
    launch_server "$1"
    sleep 1
    kill -0 "$SERVER_PID" || { cat "$TMP/$1.log"; exit 1; }
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    sleep 1
}

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PIDS+=("$!")

echo "## relay throughput: $CLIENTS clients x $MSGS messages x $LEN bytes, interval ${INTERVAL_MS} ms, UDP, channels, $REPS rounds"
echo
echo "| round | server | wall s | relayed Mbit | Mbit/s | lost | server CPU s (user+sys) | CPU ms per relayed Mbit | RTT avg ms |"
echo "|---|---|---|---|---|---|---|---|---|"
for rep in $(seq 1 "$REPS"); do
    # Alternate who goes first, so a drift in the machine's load hits both alike.
    if [ $((rep % 2)) -eq 1 ]; then order="relaycast coturn"; else order="coturn relaycast"; fi
    for name in $order; do
        start_server "$name"
        read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$SERVER_PID/stat"); t0=$(now)
        timeout 900 turnutils_uclient -W "$SECRET" -u bench -e 127.0.0.1 -r "$PEER_PORT" \
            -p "$TURN_PORT" -c -m "$CLIENTS" -n "$MSGS" -l "$LEN" -z "$INTERVAL_MS" 127.0.0.1 \
            >"$TMP/uclient-$name.out" 2>&1 || true
        t1=$(now); read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$SERVER_PID/stat")
        lost=$(grep -o 'Total lost packets [0-9]* ([0-9.]*%)' "$TMP/uclient-$name.out" | tail -1 | sed 's/Total lost packets //')
        rtt=$(grep -o 'Average round trip delay [0-9.]*' "$TMP/uclient-$name.out" | tail -1 | awk '{print $5}')
        # Every message crosses the server twice: client -> peer, and the echo peer -> client.
        awk -v w="$(echo "$t1 - $t0" | bc)" -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v tck="$TCK" \
            -v n="$((CLIENTS * MSGS))" -v l="$LEN" -v lost="${lost:-?}" -v rtt="${rtt:-?}" \
            -v name="$name" -v rep="$rep" \
            'BEGIN { mbit = n * l * 2 * 8 / 1e6; cpu = (u + s) / tck;
                     printf "| %d | %s | %.1f | %.0f | %.0f | %s | %.2f (%.2f+%.2f) | %.3f | %s |\n",
                            rep, name, w, mbit, mbit / w, lost, cpu, u / tck, s / tck,
                            cpu * 1000 / mbit, rtt }' | tee -a "$TMP/rounds"
        stop_server
    done
done
echo
echo "| server | rounds | CPU ms per relayed Mbit: mean | min | max |"
echo "|---|---|---|---|---|"
for name in relaycast coturn; do
    awk -F'|' -v name="$name" '$3 ~ " " name " " { v = $9 + 0; n++; sum += v;
             if (n == 1 || v < lo) lo = v; if (n == 1 || v > hi) hi = v }
         END { printf "| %s | %d | **%.3f** | %.3f | %.3f |\n", name, n, sum / n, lo, hi }' "$TMP/rounds"
done
awk -F'|' '$3 ~ " relaycast " { r += $9; nr++ } $3 ~ " coturn " { c += $9; nc++ }
     END { printf "\nratio relaycast / coturn (means): **%.2f**\n", (r / nr) / (c / nc) }' "$TMP/rounds"

[ "$ALLOCS" -gt 0 ] || exit 0
echo
echo "## $ALLOCS allocations held at once (UDP, REST credentials)"
echo
echo "| server | allocated | time s | RSS before MiB | RSS held MiB | bytes per allocation | fds |"
echo "|---|---|---|---|---|---|---|"
for name in relaycast coturn; do
    start_server "$name"
    r0=$(rss_kb "$SERVER_PID")
    "$HOLD" "127.0.0.1:$TURN_PORT" "$SECRET" "$ALLOCS" 6 200 >"$TMP/hold-$name.out" 2>&1 &
    hold_pid=$!
    PIDS+=("$hold_pid")
    for _ in $(seq 1 600); do
        grep -q holding "$TMP/hold-$name.out" && break
        kill -0 "$hold_pid" 2>/dev/null || break
        sleep 0.5
    done
    sleep 2
    r1=$(rss_kb "$SERVER_PID")
    fds=$(ls "/proc/$SERVER_PID/fd" | wc -l)
    wait "$hold_pid" || true
    line=$(grep '^allocated' "$TMP/hold-$name.out" || echo "allocated 0 of $ALLOCS in 0 s")
    got=$(echo "$line" | awk '{print $2}'); secs=$(echo "$line" | awk '{print $6}')
    awk -v name="$name" -v got="$got" -v secs="$secs" -v r0="$r0" -v r1="$r1" -v fds="$fds" \
        'BEGIN { per = got > 0 ? (r1 - r0) * 1024 / got : 0;
                 printf "| %s | %d | %s | %.1f | %.1f | %.0f | %d |\n",
                        name, got, secs, r0 / 1024, r1 / 1024, per, fds }'
    stop_server
done
