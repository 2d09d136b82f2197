#!/usr/bin/python3
"""The Python peer of ct3-server for scripts/bench_retrieval.sh: what a Python user would write.

FastAPI + uvicorn + faiss + numpy over a ct3 KB folder (kb/knowledge_base.h, format v1):
index.faiss through faiss.read_index (same faiss 1.7.3 as ct3), embeddings.f32 through numpy.memmap
(count and dim from manifest.json), texts from texts.jsonl. One endpoint matters, POST /v1/search,
with ct3's request fields {"embedding": [...], "k", "mode": "sift"|"faiss", "candidates", "lambda"}
and ct3's response shape (results: rank, id, text, dataset, row, score, similarity).

Search is activeft's, as ct3_original.md §2.3 describes it:
  pre-selection: search q and -q for K each in one FAISS call, merge by score descending (stable),
  keep the first K distinct ids = the K largest |<x,q>|;
  faiss mode: the first k of those, score = |cos|;
  sift mode: VTL in numpy float64 over Z = [candidates; q]: Sigma = Z Z^T, then k greedy picks
  j* = argmin_j Sigma_qq - Sigma_qj^2 / (Sigma_jj + lambda) (repeats allowed, ties to the lowest
  index), each followed by the rank-1 update Sigma -= Sigma[:, j*] Sigma[j*, :] / (Sigma_j*j* + lambda);
  score = the posterior variance after the pick.

  /usr/bin/python3 scripts/peer_server.py --kb DIR --port 8001 --workers 2

Each uvicorn worker is its own process with its own copy of the index. FAISS's OpenMP threads are
set to cores / workers so that the workers do not oversubscribe the machine (FAISS's default, all
cores per call in every worker, is markedly slower on a small machine; override with --omp-threads).
"""
import argparse
import json
import os
import sys
from typing import List, Literal

import faiss
import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

ENV_KB = "CT3_PEER_KB"
ENV_OMP = "CT3_PEER_OMP_THREADS"


class SearchRequest(BaseModel):
    embedding: List[float]
    k: int = Field(32, ge=1, le=10000)
    mode: Literal["sift", "faiss"] = "sift"
    candidates: int = Field(1000, ge=1, le=100000)
    lambda_: float = Field(0.01, alias="lambda", gt=0)


class KB:
    def __init__(self, folder):
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        self.count, self.dim = int(manifest["count"]), int(manifest["dim"])
        self.index = faiss.read_index(os.path.join(folder, "index.faiss"))
        if self.index.ntotal != self.count or self.index.d != self.dim:
            raise SystemExit(f"{folder}: index.faiss has ntotal {self.index.ntotal}, d {self.index.d}; "
                             f"manifest says count {self.count}, dim {self.dim}")
        self.embeddings = np.memmap(os.path.join(folder, "embeddings.f32"), dtype=np.float32, mode="r",
                                    shape=(self.count, self.dim))
        self.texts, self.datasets, self.rows = [], [], []
        with open(os.path.join(folder, "texts.jsonl"), encoding="utf-8") as f:
            for line in f:
                entry = json.loads(line)
                self.texts.append(entry["text"])
                self.datasets.append(entry["dataset"])
                self.rows.append(entry["row"])

    def preselect(self, q, K):
        """Ids and scores of the K largest |<x,q>|, by decreasing score (activeft's q / -q merge)."""
        K = min(K, self.count)
        D, I = self.index.search(np.stack([q, -q]), K)
        D, I = D.reshape(-1), I.reshape(-1)
        order = np.argsort(-D, kind="stable")
        ids, scores, seen = [], [], set()
        for i in order:
            idx = int(I[i])
            if idx < 0 or idx in seen:
                continue
            seen.add(idx)
            ids.append(idx)
            scores.append(float(D[i]))
            if len(ids) == K:
                break
        return ids, scores

    def sift(self, ids, q, n, lam):
        """activeft's VTL, float64: [(candidate position, posterior variance)] in selection order."""
        Z = np.vstack([self.embeddings[ids], q[None, :]]).astype(np.float64)
        sigma = Z @ Z.T
        K = len(ids)
        picks = []
        for _ in range(n):
            variance = sigma[K, K] - sigma[K, :K] ** 2 / (np.diag(sigma)[:K] + lam)
            j = int(np.argmin(variance))
            picks.append((j, float(variance[j])))
            column = sigma[:, j].copy()
            sigma -= np.outer(column, column * (1.0 / (sigma[j, j] + lam)))  # one temporary, in place
        return picks


app = FastAPI(title="ct3 peer (FastAPI + faiss)")
kb = None


@app.on_event("startup")
def load():
    global kb
    threads = int(os.environ.get(ENV_OMP, "0"))
    if threads > 0:
        faiss.omp_set_num_threads(threads)
    kb = KB(os.environ[ENV_KB])


@app.get("/health")
def health():
    return {"status": "ok", "kb": {"count": kb.count, "dim": kb.dim}}


@app.post("/v1/search")
def search(req: SearchRequest):
    if len(req.embedding) != kb.dim:
        raise HTTPException(400, f"embedding must have {kb.dim} values (got {len(req.embedding)})")
    q = np.asarray(req.embedding, dtype=np.float32)
    norm = float(np.sqrt(np.dot(q.astype(np.float64), q.astype(np.float64))))
    if not np.isfinite(norm) or norm == 0:
        raise HTTPException(400, "embedding must be finite and non-zero")
    q = q * np.float32(1.0 / norm)
    if req.mode == "faiss":
        ids, scores = kb.preselect(q, max(req.candidates, req.k))
        picked = list(zip(ids[:req.k], scores[:req.k]))
    else:
        ids, _ = kb.preselect(q, req.candidates)
        picked = [(ids[j], v) for j, v in kb.sift(ids, q, req.k, req.lambda_)] if ids else []
    results = []
    for rank, (idx, score) in enumerate(picked):
        results.append({"rank": rank, "id": idx, "text": kb.texts[idx], "dataset": kb.datasets[idx],
                        "row": kb.rows[idx], "score": score,
                        "similarity": float(np.dot(kb.embeddings[idx], q))})
    return {"object": "search.result", "mode": req.mode, "k": req.k, "candidates": req.candidates,
            "results": results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", required=True, help="ct3 KB folder (ct3-build-kb --save_dir)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--omp-threads", type=int, default=0,
                        help="FAISS OpenMP threads per worker (default: cores / workers, at least 1)")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.kb, "manifest.json")):
        sys.exit(f"error: {args.kb} is not a ct3 KB folder (no manifest.json)")
    os.environ[ENV_KB] = os.path.abspath(args.kb)
    omp = args.omp_threads or max(1, (os.cpu_count() or 1) // max(1, args.workers))
    os.environ[ENV_OMP] = str(omp)
    # The workers are fresh processes: OpenMP (FAISS) and OpenBLAS (numpy) read these at start-up,
    # and OMP_NUM_THREADS also reaches the threads of FastAPI's pool (omp_set_num_threads would not).
    os.environ["OMP_NUM_THREADS"] = str(omp)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(omp))
    import uvicorn
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("peer_server:app", host=args.host, port=args.port, workers=args.workers, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
