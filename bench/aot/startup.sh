#!/usr/bin/env bash
# Start-up time of the native AOT rotor against the JIT build, side by side in one run:
#   info      rotor info (no model, no index)
#   search    rotor search on a small index (CORPUS, default this repository's docs/, ingested once, before timing)
#   generate  the first token of rotor generate on stories260K (llama2.c, 260K parameters): -n 1, greedy
# Each command runs RUNS times (default 10) after WARMUP runs (default 2), AOT and JIT alternating; hyperfine is used
# where installed (apt-get install hyperfine), else a loop that prints the median and the min of wall times.
# Run it alone on the machine: start-up is milliseconds, and other work moves it.
#
#   bench/aot/startup.sh [AOT-DIR]    AOT-DIR: the folder scripts/publish-aot.sh made (default artifacts/aot/<this rid>)
#
# Prints a Markdown table (command, JIT ms, AOT ms, ratio) for docs/BENCHMARKS.md; with hyperfine it also writes
# its JSON to $OUT (default artifacts/aot/startup-*.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
case "$(uname -m)" in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) echo "startup: unsupported machine $(uname -m)" >&2; exit 2 ;; esac
aot_dir=${1:-artifacts/aot/$rid}
corpus=${CORPUS:-docs}
runs=${RUNS:-10}
warmup=${WARMUP:-2}
out=${OUT:-artifacts/aot}
aot="$aot_dir/rotor"
jit_dll=src/Rotor.Cli/bin/Release/net10.0/rotor.dll
[ -x "$aot" ] || { echo "startup: $aot not found; run scripts/publish-aot.sh --rid $rid first" >&2; exit 2; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/Rotor.Cli -c Release -v quiet -nologo >/dev/null
jit="dotnet $jit_dll"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The index: built once by the JIT build (the index format is the same for both).
$jit ingest docs "$corpus" --out "$work/idx" >"$work/ingest.log" 2>&1 || { tail -5 "$work/ingest.log" >&2; echo "startup: ingesting $corpus failed" >&2; exit 1; }
model=src/Rotor.Cli/Resources/lm/stories260K.bin
tok=src/Rotor.Cli/Resources/lm/tok512.bin
question="How are kernel paths chosen?"

names=(info search generate)
args_of() {
  case "$1" in
    info) echo "info" ;;
    search) echo "search $work/idx \"$question\" --top 5" ;;
    generate) echo "generate $model \"Once upon a time\" --tokenizer $tok -n 1 --temp 0" ;;
  esac
}

# Both builds must work before anything is timed.
for n in "${names[@]}"; do
  for bin in "$aot" "$jit"; do
    eval "$bin $(args_of "$n")" >"$work/check.log" 2>&1 || { tail -5 "$work/check.log" >&2; echo "startup: '$bin $(args_of "$n")' failed" >&2; exit 1; }
  done
done

echo "| command | JIT (ms) | native AOT (ms) | JIT / AOT |"
echo "|---|---:|---:|---:|"
if command -v hyperfine >/dev/null; then
  mkdir -p "$out"
  for n in "${names[@]}"; do
    a=$(args_of "$n")
    hyperfine -N --runs "$runs" --warmup "$warmup" --export-json "$out/startup-$n.json" \
      -n jit "$jit $a" -n aot "$aot $a" >/dev/null 2>&1
    python3 - "$out/startup-$n.json" "$n" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
j, a = r["jit"]["median"] * 1000, r["aot"]["median"] * 1000
print(f"| rotor {sys.argv[2]} | {j:.1f} | {a:.1f} | {j / a:.1f}x |")
EOF
  done
else
  ms() { local s e; s=$(date +%s%N); eval "$1" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
  stats() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f %.1f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) / 1000, v[1] / 1000 }'; }
  for n in "${names[@]}"; do
    a=$(args_of "$n")
    for ((i = 0; i < warmup; i++)); do ms "$jit $a" >/dev/null; ms "$aot $a" >/dev/null; done
    : >"$work/jit"; : >"$work/aot"
    for ((i = 0; i < runs; i++)); do ms "$jit $a" >>"$work/jit"; ms "$aot $a" >>"$work/aot"; done
    read -r jm jmin < <(stats <"$work/jit")
    read -r am amin < <(stats <"$work/aot")
    awk -v n="$n" -v jm="$jm" -v am="$am" -v jmin="$jmin" -v amin="$amin" \
      'BEGIN { printf "| rotor %s | %.1f (min %.1f) | %.1f (min %.1f) | %.1fx |\n", n, jm, jmin, am, amin, jm / am }'
  done
fi
echo
echo "$runs runs after $warmup warm-up runs each, medians; $(uname -m), $(nproc) processors, $(date -u +%Y-%m-%d)"
