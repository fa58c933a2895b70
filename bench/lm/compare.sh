#!/usr/bin/env bash
# Side-by-side CPU language-model benchmark: Rotor, bitnet.cpp (I2_S) and llama.cpp (TQ2_0) on the same random model of
# BitNet b1.58 2B4T's shape, prompt processing (pp) and generation (tg) at 1 and 2 threads, each tool run in turn, the
# whole round repeated ROUNDS times. Run it alone on the machine (no builds, tests or other benchmarks).
#
#   LLAMA=/path/llama.cpp/build/bin BITNET=/path/bitnet/build/bin bench/lm/compare.sh OUTDIR
#
# The GGUF files are written by Rotor from one seeded random model (rotor convert random:2b4t), so all three read the
# same weights; the architecture is llama.cpp's `bitnet` (the one both other tools load).
set -euo pipefail
OUT=${1:?usage: compare.sh OUTDIR}
ROUNDS=${ROUNDS:-2}; PP=${PP:-128}; TG=${TG:-64}; REPS=${REPS:-3}
: "${LLAMA:?LLAMA=llama.cpp bin folder}" "${BITNET:?BITNET=bitnet.cpp bin folder}"
ROTOR=${ROTOR:-"dotnet src/Rotor.Cli/bin/Release/net10.0/rotor.dll"}
mkdir -p "$OUT"
for t in i2_s tq2_0; do
  [ -f "$OUT/r2b4t-$t.gguf" ] || $ROTOR convert random:2b4t --type $t --arch bitnet -o "$OUT/r2b4t-$t.gguf"
done
{ lscpu | grep -E "Model name|^CPU\(s\)|L3"; date -u; git rev-parse --short HEAD; } > "$OUT/machine.txt"
for round in $(seq 1 "$ROUNDS"); do
  for threads in 1 2; do
    $ROTOR bench-lm "$OUT/r2b4t-i2_s.gguf" -p $PP -n $TG -r $REPS -t $threads --json "$OUT/rotor-f16head-t$threads-r$round.json" > "$OUT/rotor-f16head-t$threads-r$round.txt" 2>&1
    $ROTOR bench-lm "$OUT/r2b4t-i2_s.gguf" -p $PP -n $TG -r $REPS -t $threads --lm-head int8 --json "$OUT/rotor-int8head-t$threads-r$round.json" > "$OUT/rotor-int8head-t$threads-r$round.txt" 2>&1
    $ROTOR bench-lm "$OUT/r2b4t-i2_s.gguf" -p $PP -n $TG -r $REPS -t $threads --lm-head q4 --json "$OUT/rotor-q4head-t$threads-r$round.json" > "$OUT/rotor-q4head-t$threads-r$round.txt" 2>&1
    "$BITNET/llama-bench" -m "$OUT/r2b4t-i2_s.gguf" -p $PP -n $TG -r $REPS -t $threads -o json > "$OUT/bitnetcpp-i2_s-t$threads-r$round.json" 2> "$OUT/bitnetcpp-i2_s-t$threads-r$round.log"
    "$LLAMA/llama-bench" -m "$OUT/r2b4t-tq2_0.gguf" -p $PP -n $TG -r $REPS -t $threads -o json > "$OUT/llamacpp-tq2_0-t$threads-r$round.json" 2> "$OUT/llamacpp-tq2_0-t$threads-r$round.log"
  done
done
python3 "$(dirname "$0")/summarize.py" "$OUT" | tee "$OUT/summary.md"
