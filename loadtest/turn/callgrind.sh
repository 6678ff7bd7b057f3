#!/usr/bin/env bash
# relaycast TURN vs coturn: user-space instructions per relayed packet, counted by callgrind.
#
# Instruction counts do not depend on what else the machine is doing, so unlike CPU seconds they
# compare the two relay paths exactly even on a busy, shared machine. They do not include the
# kernel's work (the syscalls), which `strace -c -f` (syscalls.sh beside this) counts instead.
#
# For each server, twice (MSGS_LO and MSGS_HI messages per client): start it under
# `valgrind --tool=callgrind`, run coturn's turnutils_uclient (UDP, channels, REST credentials)
# through it to turnutils_peer (which echoes, so every message crosses the server twice), dump
# the counters and stop it. The difference between the two runs divided by the difference in
# relayed packets is the marginal cost of one relayed packet: start-up, allocation, permission
# and channel set-up cancel out.
#
# Needs the Debian `coturn` package, valgrind, and
#   cargo build --release -p api --bin relaycast
# RELAYCAST_EXAMPLE=path runs turn-server's loopback_turn example in place of `relaycast turn`.
# Tunables (env): CLIENTS MSGS_LO MSGS_HI LEN INTERVAL_MS RELAYCAST TARGET_DIR.
set -euo pipefail

# shellcheck source=loadtest/turn/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CLIENTS=${CLIENTS:-10}
MSGS_LO=${MSGS_LO:-500}
MSGS_HI=${MSGS_HI:-2500}
LEN=${LEN:-1000}
# Slow enough that neither server, slowed ~50x by valgrind, drops anything.
INTERVAL_MS=${INTERVAL_MS:-5}

require_tools turnutils_uclient turnutils_peer turnserver valgrind callgrind_control "${RELAYCAST_EXAMPLE:-$RELAYCAST}"

start_server() { # name out-file → sets SERVER_PID
    # shellcheck disable=SC2206
    local cg=(valgrind --tool=callgrind "--callgrind-out-file=$2" ${CG_OPTS:-})
    launch_server "$1" "${cg[@]}"
    wait_listening "$1" 120
    sleep 2
}

stop_server() {
    # coturn does not write callgrind's file on SIGTERM; a dump on request works for both.
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    while listening; do sleep 0.5; done
}

# Runs one server for MSGS messages per client; prints "instructions relayed_packets lost".
measure() { # name msgs
    local out="$TMP/cg-$1-$2.out"
    start_server "$1" "$out"
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    timeout 600 turnutils_uclient -W "$SECRET" -u bench -e 127.0.0.1 -r "$PEER_PORT" \
        -p "$TURN_PORT" -c -m "$CLIENTS" -n "$2" -l "$LEN" -z "$INTERVAL_MS" 127.0.0.1 \
        >"$TMP/uclient-$1-$2.out" 2>&1 || true
    callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
    sleep 1
    stop_server
    local ir lost
    # The dump on request is the numbered file; the final one at exit may be missing.
    ir=$(cat "$out".[0-9]* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s + 0}')
    lost=$(grep -o 'Total lost packets [0-9]*' "$TMP/uclient-$1-$2.out" | tail -1 | awk '{print $4}')
    # Each message crosses the server twice; a lost one is counted as not relayed at all.
    echo "$ir $(((CLIENTS * $2 - ${lost:-0}) * 2)) ${lost:-?}"
}

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PIDS+=("$!")

echo "## user-space instructions per relayed packet: $CLIENTS clients x ($MSGS_HI - $MSGS_LO) messages x $LEN bytes, interval ${INTERVAL_MS} ms, UDP, channels"
echo
echo "| server | Ir ($MSGS_LO msgs) | Ir ($MSGS_HI msgs) | lost lo/hi | relayed packets (difference) | **instructions per relayed packet** | instructions per relayed KB |"
echo "|---|---|---|---|---|---|---|"
for name in ${ORDER:-relaycast coturn}; do
    read -r ir_lo pk_lo lost_lo < <(measure "$name" "$MSGS_LO")
    read -r ir_hi pk_hi lost_hi < <(measure "$name" "$MSGS_HI")
    awk -v name="$name" -v a="$ir_lo" -v b="$ir_hi" -v pa="$pk_lo" -v pb="$pk_hi" \
        -v la="$lost_lo" -v lb="$lost_hi" -v len="$LEN" \
        'BEGIN { d = pb - pa; per = (b - a) / d;
                 printf "| %s | %d | %d | %s/%s | %d | **%.0f** | %.0f |\n",
                        name, a, b, la, lb, d, per, per * 1000 / len }'
done
