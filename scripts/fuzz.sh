#!/bin/sh
# Coverage-guided fuzzing of Rotor's file readers with SharpFuzz and libFuzzer (docs/FUZZING.md).
#
#   scripts/fuzz.sh SECONDS [TARGET...]      every target (Rotor.Fuzz --list) when none is named
#
# Needs: the .NET SDK, the SharpFuzz tool (dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path T),
# and libfuzzer-dotnet (github.com/Metalnem/libfuzzer-dotnet, built with clang -fsanitize=fuzzer). Their paths come
# from SHARPFUZZ (default: sharpfuzz on PATH) and LIBFUZZER_DOTNET (default: libfuzzer-dotnet on PATH).
# Work goes to FUZZ_DIR (default /tmp/rotor-fuzz): plain/ and bin/ the plain and instrumented builds, TARGET/corpus the growing corpus (kept
# between runs), TARGET/crashes the inputs that failed, TARGET/log libFuzzer's output. Exit status 1 if any target
# found a failure. Replay one: FUZZ_DIR/plain/Rotor.Fuzz TARGET FILE.
set -eu
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_DIR:-/tmp/rotor-fuzz}
sharpfuzz=${SHARPFUZZ:-sharpfuzz}
libfuzzer=${LIBFUZZER_DOTNET:-libfuzzer-dotnet}

# A plain build (it writes the seeds and replays inputs: instrumented code runs only under libFuzzer) and an
# instrumented copy of it (SharpFuzz rewrites the assemblies under test in place).
rm -rf "$work/plain" "$work/bin"
dotnet publish "$repo/tests/Rotor.Fuzz" -c Release -o "$work/plain" --nologo -v quiet
cp -r "$work/plain" "$work/bin"
for a in Rotor.Core Rotor.Index Rotor.Rag Rotor.Lm SharpCompress; do
    "$sharpfuzz" "$work/bin/$a.dll" >/dev/null
done

[ $# -gt 0 ] || set -- $("$work/plain/Rotor.Fuzz" --list | cut -d' ' -f1)
failed=0
for t in "$@"; do
    mkdir -p "$work/$t/corpus" "$work/$t/crashes"
    if ! (cd "$repo" && "$work/plain/Rotor.Fuzz" "$t" --seeds "$work/$t/corpus"); then
        echo "$t: FAILED: a seed does not load (a bug of the harness or of the reader)"; failed=1; continue
    fi
    # -timeout: an input that runs 10 s is a hang; -rss_limit_mb: one that needs 2 GiB is a failure too.
    if "$libfuzzer" --target_path="$work/bin/Rotor.Fuzz" --target_arg="$t" "$work/$t/corpus" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/$t/crashes/" \
        -print_final_stats=1 >"$work/$t/log" 2>&1; then
        result=ok
    else
        result=FAILED; failed=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'ft: [0-9]*' "$work/$t/log" | tail -1 | grep -o '[0-9]*' || echo "?")
    echo "$t: $result, $runs inputs, $cov coverage features, corpus $(ls "$work/$t/corpus" | wc -l) files, crashes: $(ls "$work/$t/crashes" | wc -l)"
done
exit $failed
