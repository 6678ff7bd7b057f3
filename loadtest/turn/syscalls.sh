#!/usr/bin/env bash
# relaycast TURN vs coturn: syscalls per relayed packet, counted by `strace -c -f` attached to
# the server for one turnutils_uclient run (UDP, channels, REST credentials) through it to
# turnutils_peer. The kernel's share of relaying is mostly per syscall, and callgrind
# (callgrind.sh beside this) does not see it. strace slows the server, so the rate is kept low.
#
# Needs the Debian `coturn` package, strace, and
#   cargo build --release -p api --bin relaycast
# RELAYCAST_EXAMPLE=path runs turn-server's loopback_turn example in place of `relaycast turn`.
# Tunables (env): CLIENTS MSGS LEN INTERVAL_MS RELAYCAST TARGET_DIR ORDER.
set -euo pipefail

# shellcheck source=loadtest/turn/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CLIENTS=${CLIENTS:-10}
MSGS=${MSGS:-1000}
LEN=${LEN:-1000}
INTERVAL_MS=${INTERVAL_MS:-5}

require_tools turnutils_uclient turnutils_peer turnserver strace "${RELAYCAST_EXAMPLE:-$RELAYCAST}"

start_server() {
    launch_server "$1"
    wait_listening "$1" 60
    sleep 1
}

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PIDS+=("$!")

echo "## syscalls per relayed packet: $CLIENTS clients x $MSGS messages x $LEN bytes, interval ${INTERVAL_MS} ms, UDP, channels"
echo
echo "| server | lost | relayed packets | syscalls | **syscalls per relayed packet** | top syscalls (calls) |"
echo "|---|---|---|---|---|---|"
for name in ${ORDER:-relaycast coturn}; do
    start_server "$name"
    strace -c -f -p "$SERVER_PID" -o "$TMP/strace-$name" 2>/dev/null &
    strace_pid=$!
    sleep 1
    timeout 600 turnutils_uclient -W "$SECRET" -u bench -e 127.0.0.1 -r "$PEER_PORT" \
        -p "$TURN_PORT" -c -m "$CLIENTS" -n "$MSGS" -l "$LEN" -z "$INTERVAL_MS" 127.0.0.1 \
        >"$TMP/uclient-$name.out" 2>&1 || true
    kill -INT "$strace_pid"; wait "$strace_pid" 2>/dev/null || true
    kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true
    while listening; do sleep 0.5; done
    lost=$(grep -o 'Total lost packets [0-9]*' "$TMP/uclient-$name.out" | tail -1 | awk '{print $4}')
    relayed=$(((CLIENTS * MSGS - ${lost:-0}) * 2))
    total=$(awk '$NF == "total" {print $4}' "$TMP/strace-$name")
    top=$(awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {print $NF "=" $4}' "$TMP/strace-$name" | head -5 | paste -sd' ')
    awk -v name="$name" -v lost="${lost:-?}" -v r="$relayed" -v t="${total:-0}" -v top="$top" \
        'BEGIN { printf "| %s | %s | %d | %d | **%.2f** | %s |\n", name, lost, r, t, t / r, top }'
done
