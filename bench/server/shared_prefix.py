#!/usr/bin/env python3
"""Concurrent chat requests that share a long system prompt (a RAG or assistant deployment's instructions): N clients
send at once, each the same system message and its own short question, streaming the reply; reports each request's
prompt tokens, the prompt tokens the server reports as cached (usage.prompt_tokens_details.cached_tokens) and its time
to first token, and the time until all replies are done. Run it against `rotor serve` and `rotor serve
--no-prompt-cache` to see what sharing the prefix saves. Standard library only.

    python3 bench/server/shared_prefix.py --url http://127.0.0.1:8099 --model random-2b4t --clients 4 --json out.json
"""
import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_turns import WORDS, turn  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="server address, e.g. http://127.0.0.1:8099")
    ap.add_argument("--model", required=True, help="model id the server serves")
    ap.add_argument("--clients", type=int, default=4, help="requests sent at once")
    ap.add_argument("--system-words", type=int, default=200, help="words in the shared system message")
    ap.add_argument("--words", type=int, default=10, help="words in each client's question")
    ap.add_argument("--max-tokens", type=int, default=16, help="tokens each reply takes at most")
    ap.add_argument("--label", default="", help="a name for this run in the table and the JSON")
    ap.add_argument("--json", help="write the requests here")
    a = ap.parse_args()
    for name in ("clients", "system_words", "words", "max_tokens"):
        if getattr(a, name) <= 0:
            sys.exit(f"shared_prefix: --{name.replace('_', '-')} {getattr(a, name)} must be positive")
    rng = random.Random(7)
    system = "Answer from these notes. " + " ".join(rng.choice(WORDS) for _ in range(a.system_words)) + "."
    questions = [" ".join(rng.choice(WORDS) for _ in range(a.words)) + "?" for _ in range(a.clients)]
    results = [None] * a.clients

    def client(i):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": questions[i]}]
        _, prompt, cached, ttft, total = turn(a.url, a.model, messages, a.max_tokens)
        results[i] = {"client": i, "prompt_tokens": prompt, "cached_tokens": cached, "ttft_s": round(ttft, 4), "total_s": round(total, 4)}

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if any(r is None for r in results):
        sys.exit("shared_prefix: a request failed")
    print(f"{'client':>6} {'prompt':>7} {'cached':>7} {'ttft s':>8} {'total s':>8}  {a.label}")
    for r in results:
        print(f"{r['client']:>6} {r['prompt_tokens']:>7} {r['cached_tokens']:>7} {r['ttft_s']:>8.3f} {r['total_s']:>8.3f}")
    mean_ttft = sum(r["ttft_s"] for r in results) / len(results)
    print(f"all done in {wall:.3f} s; mean time to first token {mean_ttft:.3f} s; prompt tokens "
          f"{sum(r['prompt_tokens'] for r in results)}, cached {sum(r['cached_tokens'] for r in results)}")
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump({"label": a.label, "clients": a.clients, "wall_s": round(wall, 4), "mean_ttft_s": round(mean_ttft, 4),
                       "requests": results}, f, indent=1)
        os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
