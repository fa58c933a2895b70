#!/usr/bin/env python3
"""A multi-turn chat against a running OpenAI-compatible server: each turn sends the whole conversation so far plus a
new user message (as every chat client does), streams the reply, and records the prompt tokens, the prompt tokens the
server reports as cached (usage.prompt_tokens_details.cached_tokens), the time to the first token and the whole
turn's time. Run it once against `rotor serve` and once against `rotor serve --no-prompt-cache` (or any other server)
to see what the prompt cache saves. Standard library only.

    rotor serve random:2b4t --tokenizer llama3-tokenizer.model --port 8099 --no-embeddings &
    python3 bench/server/chat_turns.py --url http://127.0.0.1:8099 --model random-2b4t --turns 6 --json out.json
"""
import argparse
import http.client
import json
import os
import random
import sys
import time
import urllib.parse

WORDS = ("the river city summer library garden window morning story music teacher letter bridge winter market "
         "station mountain question answer history science village harbor evening forest island journey friend "
         "picture kitchen engine planet ocean silver yellow quiet early bright simple careful gentle ancient").split()


def turn(url, model, messages, max_tokens):
    """One streamed chat completion: (reply text, prompt tokens, cached tokens, seconds to first token, seconds)."""
    u = urllib.parse.urlparse(url)
    body = json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=1200)
    try:
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            sys.exit(f"chat_turns: {url} answered HTTP {r.status}: {r.read()[:300]!r}")
        text, first, usage = [], None, None
        for raw in r:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                piece = (c.get("delta") or {}).get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter() - t0
                    text.append(piece)
        total = time.perf_counter() - t0
    finally:
        conn.close()
    if usage is None:
        sys.exit("chat_turns: the stream carried no usage chunk (stream_options.include_usage)")
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) or 0
    return "".join(text), usage["prompt_tokens"], cached, first if first is not None else total, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="server address, e.g. http://127.0.0.1:8099")
    ap.add_argument("--model", required=True, help="model id the server serves")
    ap.add_argument("--turns", type=int, default=6, help="user turns")
    ap.add_argument("--words", type=int, default=60, help="words in each user message")
    ap.add_argument("--max-tokens", type=int, default=32, help="tokens each reply takes at most")
    ap.add_argument("--seed", type=int, default=1, help="seed of the user messages' words")
    ap.add_argument("--label", default="", help="a name for this run in the table and the JSON")
    ap.add_argument("--json", help="write the turns here")
    a = ap.parse_args()
    for name in ("turns", "words", "max_tokens"):
        if getattr(a, name) <= 0:
            sys.exit(f"chat_turns: --{name.replace('_', '-')} {getattr(a, name)} must be positive")
    rng = random.Random(a.seed)
    messages = [{"role": "system", "content": "You are a helpful assistant. Answer briefly and plainly."}]
    rows = []
    print(f"{'turn':>4} {'prompt':>7} {'cached':>7} {'ttft s':>8} {'turn s':>8}  {a.label}")
    for t in range(1, a.turns + 1):
        messages.append({"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(a.words)) + "?"})
        reply, prompt, cached, ttft, total = turn(a.url, a.model, messages, a.max_tokens)
        messages.append({"role": "assistant", "content": reply})
        rows.append({"turn": t, "prompt_tokens": prompt, "cached_tokens": cached, "ttft_s": round(ttft, 4), "turn_s": round(total, 4)})
        print(f"{t:>4} {prompt:>7} {cached:>7} {ttft:>8.3f} {total:>8.3f}", flush=True)
    sum_ttft = sum(r["ttft_s"] for r in rows)
    print(f"sum of times to first token {sum_ttft:.3f} s, prompt tokens {sum(r['prompt_tokens'] for r in rows)}, "
          f"cached {sum(r['cached_tokens'] for r in rows)}")
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump({"label": a.label, "url": a.url, "model": a.model, "words": a.words, "max_tokens": a.max_tokens,
                       "turns": rows}, f, indent=1)
        os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
