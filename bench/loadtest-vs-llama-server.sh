#!/usr/bin/env bash
# Rotor's server against llama.cpp's llama-server on the same model shape, the same prompts and the same client load:
# bench/Rotor.LoadTest drives each server in turn through /v1/completions (the same text, no chat template, so both
# see the same tokens) with 1, 4 and 16 concurrent streaming clients, greedy, max_tokens each, and writes one JSON a
# server; a last step prints them side by side with Rotor's tokens/s over llama-server's. Run it on a quiet machine:
# the two servers run one after the other, never together. Each request opens its own connection (cpp-httplib closes
# a connection after a streamed response), for both servers alike.
#
#   bench/loadtest-vs-llama-server.sh OUTDIR
#
# Settings (environment):
#   LLAMA_SERVER  llama-server binary           (/work/ext/llama.cpp/build-bench/bin/llama-server)
#   ROTOR_MODEL   Rotor's GGUF                   (/work/ext/lmbench/r2b4t-i2_s.gguf)
#   LLAMA_MODEL   llama-server's GGUF            (/work/ext/lmbench/r2b4t-tq2_0.gguf)
#   TOKENIZER     Llama 3 tokenizer.model        (../shared/data/lm/llama3-tokenizer.model)
#   CLIENTS       client levels                   (1,4,16)
#   SLOTS         sequences decoded together: rotor --max-batch, llama-server --parallel (16)
#   LEVEL_SECONDS seconds a level at most         (60)
#   REQUESTS      requests a client at most       (8)
#   MAX_TOKENS    tokens a request                (64)
#   CTX           positions a sequence            (512)
#   THREADS       threads of each server          (the processors)
#   LM_HEAD       rotor --lm-head (f16 as stored, int8, ...)  (unset: the file's)
#   PORT          first port (Rotor), PORT+1 llama-server     (8090)
#   SERVERS       which servers to run            (rotor,llama-server; the side-by-side table needs both)
#   LLAMA_ARCH    general.architecture of the rewritten file (bitnet: llama.cpp's name for the
#                 squared-ReLU BitNet b1.58 graph; llama for a float model)
#
# The random 2B4T-shape GGUFs carry no vocabulary (tokenizer.ggml.model = no_vocab), which llama-server cannot
# serve (it turns every token into text). So the llama-server model is first rewritten with the Llama 3 tokenizer's
# keys by `rotor convert` (the ternary weights are copied exactly: TQ2_0 in, TQ2_0 out) into OUTDIR, once; Rotor reads
# its file as it is, with --tokenizer.
set -euo pipefail

OUT=${1:?usage: bench/loadtest-vs-llama-server.sh OUTDIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
LLAMA_SERVER=${LLAMA_SERVER:-/work/ext/llama.cpp/build-bench/bin/llama-server}
ROTOR_MODEL=${ROTOR_MODEL:-/work/ext/lmbench/r2b4t-i2_s.gguf}
LLAMA_MODEL=${LLAMA_MODEL:-/work/ext/lmbench/r2b4t-tq2_0.gguf}
TOKENIZER=${TOKENIZER:-$REPO/../shared/data/lm/llama3-tokenizer.model}
CLIENTS=${CLIENTS:-1,4,16}
SLOTS=${SLOTS:-16}
SECONDS_PER_LEVEL=${LEVEL_SECONDS:-60}
REQUESTS=${REQUESTS:-8}
MAX_TOKENS=${MAX_TOKENS:-64}
CTX=${CTX:-512}
THREADS=${THREADS:-$(nproc)}
PORT=${PORT:-8090}
SERVERS=${SERVERS:-rotor,llama-server}
LLAMA_ARCH=${LLAMA_ARCH:-bitnet}
PROMPT=${PROMPT:-"Tell me a story about a little dog who finds a red ball in the garden behind the old house."}

for f in "$LLAMA_SERVER" "$ROTOR_MODEL" "$LLAMA_MODEL" "$TOKENIZER"; do
  [ -e "$f" ] || { echo "loadtest-vs-llama-server: $f not found" >&2; exit 2; }
done
mkdir -p "$OUT"

echo "building rotor and the load test" >&2
dotnet build "$REPO/src/Rotor.Cli" -c Release -v q -nologo >&2
dotnet build "$REPO/bench/Rotor.LoadTest" -c Release -v q -nologo >&2
ROTOR=(dotnet "$REPO/src/Rotor.Cli/bin/Release/net10.0/rotor.dll")
LOADTEST=(dotnet "$REPO/bench/Rotor.LoadTest/bin/Release/net10.0/Rotor.LoadTest.dll")

# The llama-server model with a vocabulary (once).
LLAMA_VOCAB_MODEL="$OUT/$(basename "${LLAMA_MODEL%.gguf}")-llama3.gguf"
if [ ! -s "$LLAMA_VOCAB_MODEL" ]; then
  echo "writing $LLAMA_VOCAB_MODEL (llama-server needs the vocabulary in the file)" >&2
  "${ROTOR[@]}" convert "$LLAMA_MODEL" --tokenizer "$TOKENIZER" --type tq2_0 --arch "$LLAMA_ARCH" --out "$LLAMA_VOCAB_MODEL" >&2
fi

SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    # Reaps it here, quietly: llama-server aborts in its exit handler after SIGTERM (std::terminate), which the shell
    # would otherwise report as a crash; its log keeps what it printed.
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
trap stop_server EXIT

wait_healthy() {   # URL LOG
  for _ in $(seq 1 600); do
    if curl -fs "$1/health" >/dev/null 2>&1; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server exited; its log:" >&2; tail -20 "$2" >&2; exit 1; }
    sleep 0.5
  done
  echo "the server at $1 did not become healthy in 300 s" >&2; exit 1
}

run_load() {   # LABEL URL EXTRA...  (the model id is the server's first in GET /v1/models)
  local label=$1 url=$2; shift 2
  local id
  id=$(curl -fs "$url/v1/models" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')
  "${LOADTEST[@]}" --url "$url/" --model "$id" --endpoint completions --clients "$CLIENTS" --seconds "$SECONDS_PER_LEVEL" \
    --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" --temperature 0 --prompt "$PROMPT" --label "$label" \
    --fresh-connections --json "$OUT/$label.json" "$@" | tee "$OUT/$label.txt" \
    || echo "$label: some requests failed or were lost (see the table)" >&2
}

# 1. Rotor.
if [[ ",$SERVERS," == *",rotor,"* ]]; then
ROTOR_URL="http://127.0.0.1:$PORT"
HEAD_ARGS=(); [ -n "${LM_HEAD:-}" ] && HEAD_ARGS=(--lm-head "$LM_HEAD")
echo "rotor serve $ROTOR_MODEL (batch $SLOTS, ctx $CTX, threads $THREADS)" >&2
"${ROTOR[@]}" serve --model "$ROTOR_MODEL" --tokenizer "$TOKENIZER" --port "$PORT" --max-batch "$SLOTS" --ctx "$CTX" \
  --queue 256 --threads "$THREADS" --no-embeddings "${HEAD_ARGS[@]}" > "$OUT/rotor-server.log" 2>&1 &
SERVER_PID=$!
wait_healthy "$ROTOR_URL" "$OUT/rotor-server.log"
run_load rotor "$ROTOR_URL"
stop_server
fi
[[ ",$SERVERS," == *",llama-server,"* ]] || exit 0

# 2. llama-server: SLOTS slots of CTX positions each (its -c is the total), continuous batching.
LLAMA_URL="http://127.0.0.1:$((PORT + 1))"
echo "llama-server $LLAMA_VOCAB_MODEL (--parallel $SLOTS --cont-batching, ctx $CTX a slot, threads $THREADS)" >&2
"$LLAMA_SERVER" -m "$LLAMA_VOCAB_MODEL" --host 127.0.0.1 --port "$((PORT + 1))" -t "$THREADS" -tb "$THREADS" \
  --parallel "$SLOTS" --cont-batching -c "$((SLOTS * CTX))" > "$OUT/llama-server.log" 2>&1 &
SERVER_PID=$!
wait_healthy "$LLAMA_URL" "$OUT/llama-server.log"
run_load llama-server "$LLAMA_URL" --ignore-eos
stop_server

# 3. Side by side.
python3 - "$OUT/rotor.json" "$OUT/llama-server.json" <<'PY' | tee "$OUT/comparison.txt"
import json, sys
r, l = (json.load(open(p)) for p in sys.argv[1:3])
print(f"max_tokens {r['max_tokens']}, endpoint {r['endpoint']}, {r['machine']}, {r['date']}")
print("clients | rotor tok/s | llama-server tok/s | rotor / llama | rotor TTFT p50/p99 ms | llama TTFT p50/p99 ms | rotor TPOT p50/p99 ms | llama TPOT p50/p99 ms | failed+lost r/l | prompt tokens r/l")
for a, b in zip(r["levels"], l["levels"]):
    assert a["clients"] == b["clients"]
    ratio = a["tokens_per_second"] / b["tokens_per_second"] if b["tokens_per_second"] else float("nan")
    n = lambda x: float("nan") if x is None else x
    a = {k: n(v) for k, v in a.items()}; b = {k: n(v) for k, v in b.items()}
    print(f"{a['clients']:7} | {a['tokens_per_second']:11.1f} | {b['tokens_per_second']:18.1f} | {ratio:13.2f} | "
          f"{a['ttft_p50_ms']:.0f} / {a['ttft_p99_ms']:.0f} | {b['ttft_p50_ms']:.0f} / {b['ttft_p99_ms']:.0f} | "
          f"{a['tpot_p50_ms']:.1f} / {a['tpot_p99_ms']:.1f} | {b['tpot_p50_ms']:.1f} / {b['tpot_p99_ms']:.1f} | "
          f"{a['failed'] + a['lost']} / {b['failed'] + b['lost']} | {a['prompt_tokens_mean']:.1f} / {b['prompt_tokens_mean']:.1f}")
for name, d in (("rotor", r), ("llama-server", l)):
    one = next((x for x in d["levels"] if x["clients"] == 1), None)
    if one and one["tokens_per_second"] > 0 and any(x["clients"] > 1 for x in d["levels"]):
        print(name + ": " + ", ".join(f"{x['clients']} clients {x['tokens_per_second'] / one['tokens_per_second']:.2f}x" for x in d["levels"] if x["clients"] > 1) + " the tokens/s of 1 client")
PY
