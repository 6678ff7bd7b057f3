#!/usr/bin/env bash
# Instructions per packet an estimating viewer costs the server, counted by callgrind in the
# sfu's simulated-network test (sfu/src/sim_tests.rs: one viewer with str0m's bandwidth
# estimator, a str0m client, 60 s of simulated time; deterministic up to random SSRCs and keys).
# Counts the calls the test makes on the server's side (the worker's drain `worker::poll_output`,
# the viewer's `Rtc::handle_input`, `Peer::write_frame` and the other `Peer` calls), not the
# client, the simulated publisher's packetizer or the set-up; divides by the RTP packets the
# server sent (calls to `SrtpContext::protect_rtp`, which only the server makes).
# Benchmark only (docs/benchmarks.md, "Pacer bursts").
#
# usage: loadtest/sfu/pacer_bursts_callgrind.sh TEST_BINARY [paced|unpaced]
#        TEST_BINARY: the sfu unit-test binary of a release build with line tables, e.g.
#          cargo test --release --locked -p sfu --no-run \
#            --config 'profile.release.package.sfu.debug="line-tables-only"'
#        SIM_TESTS (default sfu/src/sim_tests.rs): the test's source, to tell server calls from
#        client calls by their line.
set -euo pipefail
BIN=$1; MODE=${2:-unpaced}
SRC=${SIM_TESTS:-sfu/src/sim_tests.rs}
case $MODE in
  unpaced) TEST=sim_tests::a_viewer_moves_down_a_layer_when_its_bandwidth_falls_and_back_up_when_it_recovers ;;
  paced) TEST=sim_tests::a_paced_viewer_moves_down_a_layer_and_back_up_too ;;
  *) echo "mode: paced or unpaced" >&2; exit 2 ;;
esac
OUT=$(mktemp /tmp/pacer-callgrind-XXXX.out)
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" --exact "$TEST" --test-threads=1 --nocapture \
  > "$OUT.log" 2>&1 || { cat "$OUT.log"; exit 1; }
grep -E 'layers:' "$OUT.log" || true
python3 - "$OUT" "$SRC" <<'EOF'
import collections, re, sys

out, src = sys.argv[1], sys.argv[2]
source = open(src).read().split('\n')

def side(line):
    """server, client or other, for a call made at this line of the test."""
    i = line - 1
    while i > 0 and source[i].strip().startswith('.'):
        i -= 1
    head = source[i]
    if 'viewer' in head:
        return 'server'
    if 'client' in head:
        return 'client'
    return 'other'

names = {}
def name(kind, v):
    m = re.match(r'\((\d+)\)(?: (.*))?', v)
    if not m:
        return v
    key = ('fn' if kind in ('fn', 'cfn') else 'fl', m.group(1))
    if m.group(2) is not None:
        names[key] = m.group(2)
    return names.get(key, '?')

fn = file = ctx = cfn = None
last = 0
pending = None
total = 0
fed = 0
by_site = collections.defaultdict(int)
calls_to = collections.defaultdict(int)
for raw in open(out):
    line = raw.rstrip('\n')
    if not line or line[0] == '#':
        continue
    if line.startswith('summary:'):
        total = int(line.split()[1])
        continue
    m = re.match(r'(fl|fi|fe|fn|cfn|cfl|cfi|ob|cob)=(.*)', line)
    if m:
        k, v = m.groups()
        n = name(k, v)
        if k == 'fl':
            file = ctx = n
        elif k in ('fi', 'fe'):
            ctx = n
        elif k == 'fn':
            fn, ctx = n, file
        elif k == 'cfn':
            cfn = n
        continue
    if line.startswith('calls='):
        pending = (cfn, int(line.split('=')[1].split()[0]))
        continue
    if line[0].isdigit() or line[0] in '+-*':
        tok = line.split()
        p = last if tok[0] == '*' else last + int(tok[0]) if tok[0][0] in '+-' else int(tok[0])
        last = p
        if pending is not None:
            callee, count = pending
            calls_to[callee] += count
            if fn == 'sfu::worker::poll_output' and callee == 'str0m::Rtc::handle_input':
                fed += count
            if fn == 'sfu::sim_tests::falls_and_recovers':
                cost = int(tok[1])
                if ctx.endswith('sim_tests.rs'):
                    by_site[(side(p), callee)] += cost
                elif '/sfu/src/' in ctx:
                    by_site[('server', callee)] += cost
            pending = None

packets = sum(n for f, n in calls_to.items() if f.endswith('SrtpContext::protect_rtp'))
server = sum(c for (s, _), c in by_site.items() if s == 'server')
# The drain: the worker's poll_output, or str0m's if that is inlined into the test.
drained = ('sfu::worker::poll_output', 'str0m::Rtc::poll_output')
drain = sum(c for (s, f), c in by_site.items() if s == 'server' and f in drained)
print(f"total Ir {total:,}   server RTP packets {packets:,}")
print(f"server Ir {server:,} = {server / packets:,.0f} per packet "
      f"(of which draining its output: {drain / packets:,.0f})")
print(f"timeouts fed by the drain (worker::poll_output): {fed:,} = {fed / packets:.2f} per packet")
for (s, f), c in sorted(by_site.items(), key=lambda kv: -kv[1]):
    if s == 'server' and c > server / 1000:
        print(f"  {c / packets:>9,.0f} per packet  {f}")
EOF
rm -f "$OUT" "$OUT.log"
