#!/usr/bin/python3
"""Helpers of scripts/bench_retrieval.sh and scripts/replicas_nginx.sh (stdlib + numpy only).

  free-port                                   print a free loopback TCP port
  wait-health URL SECONDS                     poll URL/health until 200 (exit 1 on timeout)
  synth N OUT                                 N distinct short synthetic texts as JSONL {"text": ...}
  embed-bodies URL QUESTIONS N OUTPREFIX       embed the first N questions of a JSONL file through
                                              URL/v1/embeddings; write OUTPREFIX.{faiss,sift}.jsonl
  random-bodies DIM N SEED OUTPREFIX          the same with random unit vectors
  dump URL BODIES N OUT                       POST the first N bodies to URL/v1/search, save id/score lists
  compare A.json B.json                       compare two dumps (ct3 vs peer); print a JSON summary
  table RESULTS.jsonl XCHECK.jsonl META.json  markdown report on stdout
"""
import itertools
import json
import random
import socket
import sys
import time
import urllib.error
import urllib.request

K, CANDIDATES, LAMBDA = 32, 1000, 0.01


def http_json(url, payload=None, timeout=120):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait_health(url, seconds):
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    sys.exit(f"wait-health: {url}/health not 200 after {seconds} s")


def synth(n, out):
    # Pseudo-words from syllables, drawn with a skewed (Zipf-like) frequency so that the hashed
    # embedder's IDF sees common and rare words; a set guarantees distinct texts.
    rng = random.Random(0)
    syllables = [c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"]
    vocab = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(6000)})
    cum_weights = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(vocab))))  # once, not per call
    seen = set()
    n = int(n)
    with open(out, "w") as f:
        while len(seen) < n:
            words = rng.choices(vocab, cum_weights=cum_weights, k=rng.randint(5, 12))
            text = " ".join(words)
            if text in seen:
                continue
            seen.add(text)
            f.write(json.dumps({"text": text}) + "\n")


def write_bodies(vectors, prefix):
    for mode in ("faiss", "sift"):
        with open(f"{prefix}.{mode}.jsonl", "w") as f:
            for v in vectors:
                f.write(json.dumps({"embedding": [float(x) for x in v], "k": K, "mode": mode,
                                    "candidates": CANDIDATES, "lambda": LAMBDA}) + "\n")


def embed_bodies(url, questions_file, n, prefix):
    questions = []
    with open(questions_file) as f:
        for line in f:
            if line.strip():
                questions.append(json.loads(line)["question"])
            if len(questions) == int(n):
                break
    vectors = []
    for i in range(0, len(questions), 64):
        reply = http_json(url + "/v1/embeddings", {"input": questions[i:i + 64]})
        vectors += [d["embedding"] for d in sorted(reply["data"], key=lambda d: d["index"])]
    write_bodies(vectors, prefix)


def random_bodies(dim, n, seed, prefix):
    import numpy as np
    rng = np.random.default_rng(int(seed))
    v = rng.standard_normal((int(n), int(dim))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    write_bodies(v, prefix)


def dump(url, bodies, n, out):
    rows = []
    with open(bodies) as f:
        for line in f:
            if len(rows) == int(n):
                break
            reply = http_json(url + "/v1/search", json.loads(line))
            rows.append({"ids": [r["id"] for r in reply["results"]], "scores": [r["score"] for r in reply["results"]]})
    with open(out, "w") as f:
        json.dump(rows, f)


def compare(a_file, b_file):
    a, b = json.load(open(a_file)), json.load(open(b_file))
    identical, divergences = 0, []
    for qi, (x, y) in enumerate(zip(a, b)):
        if x["ids"] == y["ids"]:
            identical += 1
            continue
        first = next((i for i, (p, q) in enumerate(zip(x["ids"], y["ids"])) if p != q), min(len(x["ids"]), len(y["ids"])))
        at = lambda r, i: (r["ids"][i], r["scores"][i]) if i < len(r["ids"]) else (None, None)
        divergences.append({"query": qi, "index": first, "ct3": at(x, first), "peer": at(y, first),
                            "ct3_score_before": x["scores"][first - 1] if first > 0 else None,
                            "peer_score_before": y["scores"][first - 1] if first > 0 else None})
    max_score_diff = max((abs(s - t) for x, y in zip(a, b) if x["ids"] == y["ids"]
                          for s, t in zip(x["scores"], y["scores"])), default=0.0)
    print(json.dumps({"queries": min(len(a), len(b)), "identical": identical, "max_score_diff": max_score_diff,
                      "divergences": divergences}))


# A run in which no request finished inside the window (a slow server sharing its CPU among all
# c requests of the first wave) has no figures: shown as "none in N s", its ratios as n/a.
def qps(r):
    return f"{r['qps']:.1f}" if r["requests"] else f"none in {r['duration_s']:.0f} s"


def ms(r, key):
    return f"{r[key]:.1f}" if r["requests"] else "—"


def ratio(a, b, key):
    return f"{a[key] / b[key]:.2f}×" if a["requests"] and b["requests"] else "n/a"


def table(results_file, xcheck_file, meta_file):
    meta = json.load(open(meta_file))
    runs = [json.loads(l) for l in open(results_file) if l.strip()]
    by = {(r["kb"], r["server"], r["mode"], r["concurrency"]): r for r in runs}
    print(f"### Retrieval: ct3-server vs Python peer (FastAPI + faiss), {meta['date']}\n")
    print(f"- machine: {meta['cpu']}, **{meta['cores']} cores**, {meta['mem']} RAM; load average at start "
          f"{meta['load_start']}, at end {meta['load_end']}")
    print(f"- ct3-server `--threads T` for T in {meta['ct3_threads']}; peer `--workers {meta['cores']}` (uvicorn, "
          f"FAISS OpenMP threads = cores / workers); faiss {meta['faiss']} on both sides")
    print(f"- wrk `-t min(2,c) -c C -d {meta['seconds']}s --timeout 30s` (c ≥ 64: `-d {2 * meta['seconds']}s`), POST /v1/search, k={K}, "
          f"candidates={CANDIDATES}, λ={LAMBDA}; queries rotate over {meta['queries']} bodies per KB")
    for kb in meta["kbs"]:
        print(f"- KB `{kb['name']}`: {kb['count']} entries, dim {kb['dim']}, index {kb['index']}, "
              f"queries: {kb['queries']}; build_kb {kb['texts_per_second']:.0f} texts/s ({kb['seconds']:.1f} s)")
    print()
    print("| KB | mode | c | ct3 threads | ct3 QPS | peer QPS | QPS ratio | ct3 p50 ms | peer p50 ms | p50 ratio "
          "| ct3 p99 ms | peer p99 ms | p99 ratio | errors ct3/peer |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [(kb["name"], mode, c, t) for kb in meta["kbs"] for mode in ("faiss", "sift")
            for c in meta["concurrency"] for t in meta["ct3_threads"]]
    for name, mode, c, t in rows:
        o, p = by.get((name, f"ct3-t{t}", mode, c)), by.get((name, "peer", mode, c))
        if not o or not p:
            continue
        print(f"| {name} | {mode} | {c} | {t} | {qps(o)} | {qps(p)} | {ratio(o, p, 'qps')} "
              f"| {ms(o, 'p50_ms')} | {ms(p, 'p50_ms')} | {ratio(p, o, 'p50_ms')} "
              f"| {ms(o, 'p99_ms')} | {ms(p, 'p99_ms')} | {ratio(p, o, 'p99_ms')} "
              f"| {o['errors']}/{p['errors']} |")
    print("\nRatios: QPS ratio = ct3 QPS / peer QPS; p50/p99 ratio = peer latency / ct3 latency (>1: ct3 faster).\n")
    print(f"#### Cross-check (same queries, ct3 `--threads {meta['ct3_threads'][0]}` vs peer)\n")
    print("| KB | mode | queries | identical id lists | max score difference (identical lists) | first divergences |")
    print("|---|---|---:|---:|---:|---|")
    for line in open(xcheck_file):
        x = json.loads(line)
        div = "; ".join(f"q{d['query']}@{d['index']}: ct3 id {d['ct3'][0]} ({d['ct3'][1]:.9g}) vs peer id "
                        f"{d['peer'][0]} ({d['peer'][1]:.9g})" for d in x["divergences"][:3] if d["ct3"][0] is not None
                        and d["peer"][0] is not None) or "—"
        print(f"| {x['kb']} | {x['mode']} | {x['queries']} | {x['identical']} | {x['max_score_diff']:.2e} | {div} |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"free-port": free_port, "wait-health": wait_health, "synth": synth, "embed-bodies": embed_bodies,
     "random-bodies": random_bodies, "dump": dump, "compare": compare, "table": table}[cmd](*args)
