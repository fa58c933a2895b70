#!/usr/bin/env python3
"""Load test of a running OpenAI-compatible server from a machine without the .NET SDK (a GPU machine): N concurrent
streaming clients at each level send /v1/completions requests one after another for the level's seconds; reports per
level requests/s, generated tokens/s in total, time to first token and time per output token (p50/p99), failures, and
each level's tokens/s over one client's. The same measures as bench/Rotor.LoadTest (whose in-process --serve needs its
own published runtime); standard library only.

    rotor serve random:2b4t --tokenizer llama3-tokenizer.model --device cuda --max-batch 64 --port 8099 &
    python3 bench/cuda/serve_load.py --url http://127.0.0.1:8099 --model random-2b4t --clients 1,8,32,64 --json out.json
"""
import argparse
import http.client
import json
import math
import sys
import threading
import time
import urllib.parse


def one_request(url, model, prompt, max_tokens, temperature):
    """One streamed completion: (ok, tokens, seconds to the first token, seconds in all)."""
    u = urllib.parse.urlparse(url)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                       "stream": True, "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return False, 0, 0.0, 0.0, f"HTTP {r.status}: {r.read()[:200]!r}"
        first, tokens, done = None, -1, False
        for raw in r:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            j = json.loads(data)
            if "error" in j:
                return False, 0, 0.0, 0.0, str(j["error"])
            if j.get("usage"):
                tokens = j["usage"]["completion_tokens"]
            if first is None and any(c.get("text") for c in j.get("choices", [])):
                first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        if not done or tokens < 0:
            return False, 0, 0.0, 0.0, "the stream ended without usage and [DONE]"
        return True, tokens, first if first is not None else total, total, None
    finally:
        conn.close()


def percentile(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def level(args, clients):
    results, lock = [], threading.Lock()
    deadline = time.perf_counter() + args.seconds

    def client(c):
        i = 0
        while time.perf_counter() < deadline and i < args.requests:
            # The request number leads the prompt, so no server reuses a cached prefix.
            res = one_request(args.url, args.model, f"{c * 1000 + i}. {args.prompt}", args.max_tokens, args.temperature)
            if not res[0]:
                print("failure:", res[4], file=sys.stderr)
            with lock:
                results.append(res)
            i += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    ok = [r for r in results if r[0]]
    tokens = sum(r[1] for r in ok)
    tpot = [(r[3] - r[2]) / (r[1] - 1) for r in ok if r[1] > 1]
    return {"clients": clients, "requests": len(results), "failed": len(results) - len(ok), "seconds": seconds,
            "requests_per_second": len(ok) / seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
            "ttft_p50_ms": percentile([r[2] for r in ok], 0.5) * 1e3, "ttft_p99_ms": percentile([r[2] for r in ok], 0.99) * 1e3,
            "tpot_p50_ms": percentile(tpot, 0.5) * 1e3, "tpot_p99_ms": percentile(tpot, 0.99) * 1e3}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True, help="the model id the server serves")
    p.add_argument("--clients", default="1,8,32,64")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--requests", type=int, default=1000, help="requests a client sends at most in a level")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--prompt", default="Tell me a story about a little dog who finds a red ball.")
    p.add_argument("--json")
    args = p.parse_args()
    try:
        levels = [int(x) for x in args.clients.split(",")]
        if any(x <= 0 for x in levels):
            raise ValueError
    except ValueError:
        sys.exit(f"--clients '{args.clients}': a comma-separated list of positive numbers")
    ok = one_request(args.url, args.model, "0. warm-up", args.max_tokens, args.temperature)
    if not ok[0]:
        sys.exit(f"the warm-up request failed: {ok[4]}")
    print("clients  requests  failed  seconds  req/s   tokens/s  ttft p50 ms  ttft p99 ms  tpot p50 ms  tpot p99 ms")
    out = []
    for c in levels:
        r = level(args, c)
        out.append(r)
        print(f"{c:7d}  {r['requests']:8d}  {r['failed']:6d}  {r['seconds']:7.1f}  {r['requests_per_second']:5.2f}  "
              f"{r['tokens_per_second']:9.1f}  {r['ttft_p50_ms']:11.1f}  {r['ttft_p99_ms']:11.1f}  {r['tpot_p50_ms']:11.2f}  {r['tpot_p99_ms']:11.2f}")
    one = next((r for r in out if r["clients"] == 1), None)
    if one and one["tokens_per_second"] > 0:
        for r in out:
            if r["clients"] > 1:
                print(f"{r['clients']} clients: {r['tokens_per_second'] / one['tokens_per_second']:.2f}x the total tokens/s of 1 client")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"url": args.url, "model": args.model, "max_tokens": args.max_tokens, "seconds_per_level": args.seconds,
                       "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "levels": out}, f, indent=2)
    sys.exit(1 if any(r["failed"] for r in out) else 0)


if __name__ == "__main__":
    main()
