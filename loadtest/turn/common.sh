# Shared by compare.sh, callgrind.sh and syscalls.sh (sourced, not run): the repository root as
# working directory, ports and credentials, a temporary directory cleaned up on exit with every
# process in PIDS, and how relaycast's TURN server and coturn are started with the same relay
# settings. RELAYCAST_EXAMPLE=path runs turn-server's loopback_turn example in place of
# `relaycast turn`.

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
RELAYCAST=${RELAYCAST:-$TARGET_DIR/release/relaycast}
SECRET=bench-secret-$$
PEER_PORT=${PEER_PORT:-13480}
TURN_PORT=${TURN_PORT:-13478}
# Listener and relay ports below the kernel's ephemeral range, so the load clients' own sockets
# never take them.
RELAY_LO=20000
RELAY_HI=32000

require_tools() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
    done
}

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

listening() { ss -Hlun "sport = :$TURN_PORT" | grep -q .; }

# Starts server NAME (relaycast or coturn) in the background, its output in $TMP/NAME.log, with
# the words after NAME as a command prefix (e.g. valgrind); sets SERVER_PID and adds it to PIDS.
launch_server() {
    local name=$1
    shift
    case $name in
    relaycast)
        if [ -n "${RELAYCAST_EXAMPLE:-}" ]; then
            # turn-server's loopback_turn example: the same TurnServer, quick to build.
            "$@" "$RELAYCAST_EXAMPLE" "$SECRET" "$TURN_PORT" "$((TURN_PORT + 1))" >"$TMP/$name.log" 2>&1 &
        else
            "$@" "$RELAYCAST" turn --turn-udp "127.0.0.1:$TURN_PORT" --turn-secret "$SECRET" \
                --turn-allow-loopback-peers --turn-relay-ports "$RELAY_LO-$RELAY_HI" \
                --turn-user-quota 100000 --turn-total-quota 100000 >"$TMP/$name.log" 2>&1 &
        fi
        ;;
    coturn)
        "$@" turnserver -n --no-cli --use-auth-secret --static-auth-secret="$SECRET" \
            --realm=relaycast --listening-ip=127.0.0.1 --listening-port="$TURN_PORT" \
            --relay-ip=127.0.0.1 --min-port="$RELAY_LO" --max-port="$RELAY_HI" \
            --allow-loopback-peers --no-tls --no-dtls --no-tcp-relay \
            --userdb="$TMP/turndb" --pidfile="$TMP/turnserver.pid" \
            --log-file=stdout --simple-log >"$TMP/$name.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

# Waits up to TRIES half-seconds for the TURN port to listen (the server's log and exit if not).
wait_listening() { # name tries
    for _ in $(seq 1 "$2"); do
        listening && return 0
        sleep 0.5
    done
    cat "$TMP/$1.log"
    exit 1
}
