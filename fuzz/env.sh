# Sourced by fuzz/run and fuzz/bench: the stable-toolchain libFuzzer build.
# cargo fuzz passes the same LLVM sanitizer-coverage options; they are stable
# -C flags, so stable rustc builds the instrumented binaries without nightly
# (only -Zsanitizer=address would need it, and safe Rust does not).
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cforce-frame-pointers"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/target}"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros
# (they would need the fuzzer runtime to link).
FUZZ_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export FUZZ_TRIPLE
FUZZ_BIN_DIR="$CARGO_TARGET_DIR/$FUZZ_TRIPLE/release"
export FUZZ_BIN_DIR
