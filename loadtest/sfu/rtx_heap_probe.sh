#!/usr/bin/env bash
# Heap held by one str0m retransmission cache of 768 packets that share one payload (what each
# relaycast viewer keeps per video stream), measured by valgrind: "in use at exit" of a unit test
# that fills the cache and exits with it alive, minus the same test caching nothing. Builds the
# given str0m source (a copy of vendor/str0m, before or after patch 3) from a scratch copy
# without the crypto backends and dev-dependencies this registry lacks (vendor/str0m/PATCHES.md).
# Benchmark only (docs/benchmarks.md, "Compact retransmission entries").
#
# usage (from the repository root): loadtest/sfu/rtx_heap_probe.sh STR0M_DIR [PACKETS]
#        CARGO_TARGET_DIR is used for the build (a str0m test build of its own)
set -euo pipefail
SRC=$1; N=${2:-768}
S=$(mktemp -d /tmp/rtx-heap-XXXX)
cp -r "$SRC"/. "$S"
[ -f Cargo.lock ] && cp Cargo.lock "$S/"  # the workspace's versions
python3 - "$S/Cargo.toml" <<'PY'
import re, sys
p = sys.argv[1]; s = open(p).read()
for name in ['str0m-openssl', 'str0m-wincrypto', 'str0m-apple-crypto', 'str0m-rust-crypto']:
    s = re.sub(r'\n\[[^\]\n]*dependencies\.' + re.escape(name) + r'\]\n(?:[^\[\n][^\n]*\n)*', '\n', s)
s = re.sub(r'\n\[dev-dependencies\.netem\]\n(?:[^\[\n][^\n]*\n)*', '\n', s)
out, skip = [], False
for l in s.split('\n'):
    if re.match(r'^(apple-crypto|openssl|openssl-dimpl|rust-crypto|vendored|wincrypto|wincrypto-dimpl) =', l):
        skip = not l.rstrip().endswith(']'); continue
    if skip:
        skip = not l.strip().endswith(']'); continue
    out.append(l)
open(p, 'w').write('\n'.join(out))
PY
# Patch 3 passes the stream's MidRid when caching.
if grep -q 'midrid: MidRid, now: Instant' "$S/src/streams/rtx_cache.rs"; then
  CACHE_ARGS='pkt, crate::rtp_::MidRid("v".into(), None), now + Duration::from_micros(i)'
else
  CACHE_ARGS='pkt, now + Duration::from_micros(i)'
fi
cat >> "$S/src/streams/rtx_cache.rs" <<RS

#[cfg(test)]
mod heap_probe {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::rtp_::{MediaTime, RtpHeader};

    #[test]
    #[ignore]
    fn rtx_cache_heap_probe() {
        let now = Instant::now();
        let payload: Arc<[u8]> = vec![0u8; 1100].into();
        let n: u64 = std::env::var("RTX_PROBE_N").map_or(0, |v| v.parse().expect("a count"));
        if n == 0 {
            std::mem::forget(payload);
            std::process::exit(0);
        }
        let mut cache = RtxCache::new($N, Duration::from_secs(3));
        for i in 0..n {
            let pkt = RtpPacket {
                header: RtpHeader::default(),
                seq_no: i.into(),
                time: MediaTime::from_90khz(0),
                payload: payload.clone(),
                vp8_patch: None,
                timestamp: now,
                last_sender_info: None,
                nackable: true,
            };
            cache.cache_sent_packet($CACHE_ARGS);
        }
        std::mem::forget((cache, payload));
        std::process::exit(0);
    }
}
RS
( cd "$S" && nice -n 10 cargo test --lib --no-run 2> "$S/build.log" ) || { tail -20 "$S/build.log"; exit 1; }
BIN=$(grep -o '/[^ ]*/deps/str0m-[0-9a-f]*' "$S/build.log" | tail -1)
for n in 0 "$N"; do
  RTX_PROBE_N=$n valgrind --tool=memcheck --leak-check=no "$BIN" heap_probe --ignored --exact \
    streams::rtx_cache::heap_probe::rtx_cache_heap_probe > /dev/null 2> "$S/vg.$n"
  grep -o 'in use at exit: [0-9,]* bytes in [0-9,]* blocks' "$S/vg.$n" | sed "s/^/$n packets: /"
done
b0=$(grep -o 'in use at exit: [0-9,]* bytes' "$S/vg.0" | tr -dc 0-9)
b1=$(grep -o 'in use at exit: [0-9,]* bytes' "$S/vg.$N" | tr -dc 0-9)
echo "cache of $N packets: $((b1 - b0)) bytes, $(((b1 - b0) / N)) bytes per packet ($SRC)"
rm -rf "$S"
