#!/usr/bin/env bash
# Server memory across LL-HLS streams with the ABR ladder: RUNS publishes of one 1280x720
# H.264 layer + Opus (relaycast-load --no-simulcast, one WHEP viewer), each followed by IDLE
# seconds without a publisher (longer than the 120 s the ended playlists linger, so the
# stream's entry is dropped inside the window). The server's VmRSS, VmHWM, RssAnon, VmSize
# (address space: glibc reserves 64 MiB per malloc arena, mostly never touched) and threads
# are sampled every second into $OUT/rss.tsv; one summary line per phase goes to stdout.
#
#   cargo build --release --locked -p api -p relaycast-load
#   loadtest/hls/ladder_rss.sh                        # default ladder
#   loadtest/hls/ladder_rss.sh --hls-ladder none      # extra args go to `relaycast serve`
#   MALLOC_ARENA_MAX=2 loadtest/hls/ladder_rss.sh     # env reaches the server
#
# Tunables (env): RUNS (2) PUBLISH (30s) IDLE (150) LIVE_MARK (25) TARGET_DIR (target)
# RELAYCAST LOAD PORT (18190) OUT.
set -euo pipefail

TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
RELAYCAST=${RELAYCAST:-$TARGET_DIR/release/relaycast}
LOAD=${LOAD:-$TARGET_DIR/release/relaycast-load}
RUNS=${RUNS:-2}
PUBLISH=${PUBLISH:-30s}
IDLE=${IDLE:-150}
LIVE_MARK=${LIVE_MARK:-25} # seconds into a publish for the "live" line
PORT=${PORT:-18190}
OUT=${OUT:-$(mktemp -d)}
for t in "$RELAYCAST" "$LOAD"; do
    [ -x "$t" ] || { echo "missing $t (cargo build --release -p api -p relaycast-load)" >&2; exit 1; }
done

DATA=$OUT/data
mkdir -p "$DATA"
KEY=$("$RELAYCAST" keys create load --data-dir "$DATA")
"$RELAYCAST" serve --data-dir "$DATA" --http-addr "127.0.0.1:$PORT" --media-port 0 \
    --public-ip 127.0.0.1 "$@" 2>"$OUT/serve.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 2
kill -0 "$PID"

status_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PID/status"; }
t0=$(date +%s)
(
    while kill -0 "$PID" 2>/dev/null; do
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(($(date +%s) - t0))" "$(status_kib VmRSS)" \
            "$(status_kib VmHWM)" "$(status_kib RssAnon)" "$(status_kib VmSize)" "$(status_kib Threads)"
        sleep 1
    done
) >"$OUT/rss.tsv" &

mark() { # phase name → one line: seconds since start, RSS, peak, anonymous RSS, VSZ, threads
    printf '%-18s t=%4ss  VmRSS %6s  VmHWM %6s  RssAnon %6s  VmSize %7s KiB  threads %s\n' "$1" \
        "$(($(date +%s) - t0))" "$(status_kib VmRSS)" "$(status_kib VmHWM)" \
        "$(status_kib RssAnon)" "$(status_kib VmSize)" "$(status_kib Threads)"
}

echo "# $RELAYCAST serve $* (env: ${MALLOC_ARENA_MAX:+MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX }${MALLOC_MMAP_THRESHOLD_:+MALLOC_MMAP_THRESHOLD_=$MALLOC_MMAP_THRESHOLD_}) out=$OUT"
mark "idle"
for run in $(seq 1 "$RUNS"); do
    "$LOAD" --url "http://127.0.0.1:$PORT" --stream load --key "$KEY" --no-simulcast \
        --viewers 1 --duration "$PUBLISH" --server-pid "$PID" >"$OUT/load-$run.txt" 2>&1 &
    LOAD_PID=$!
    sleep "$LIVE_MARK"
    mark "run $run: live"
    wait "$LOAD_PID"
    mark "run $run: ended"
    sleep 10
    mark "run $run: +10 s"
    sleep $((IDLE - 10))
    mark "run $run: +$IDLE s"
done
