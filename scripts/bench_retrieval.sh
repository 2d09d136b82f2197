#!/usr/bin/env bash
# Retrieval benchmark: ct3-server against a Python peer (FastAPI + uvicorn + faiss + numpy,
# scripts/peer_server.py) doing the same search on the same KB folders, measured in the same run.
#
#   scripts/bench_retrieval.sh [build-dir]          markdown report on stdout (progress on stderr)
#
# 1. KBs (built once, reused): kb_all = ct3-build-kb --datasets all (every train set in the data
#    root), kb_synth_N = N distinct synthetic short texts (default 1,000,000), hashed embedder, Flat.
# 2. Queries: kb_all — the first 200 gsm8k *test* questions embedded by ct3-server's /v1/embeddings
#    (queries only, never in a KB); kb_synth — 200 random unit vectors.
# 3. For each KB x server x mode (faiss, sift; k=32, candidates=1000) x concurrency (1, 16, 64):
#    wrk -t min(2,c) -c c -d BENCH_SECONDS s (twice that at c >= 64) with scripts/bench/search.lua (1 s warm-up per mode).
# 4. Cross-check: the first 20 queries per mode against both servers; faiss ids must be identical,
#    sift ids identical or the first divergence is reported (float64 peer vs float32/float64 ct3).
# 5. Report: tables with ratios + build_kb throughput from each manifest.
# Environment: BENCH_DIR (work folder, default /tmp/ct3-bench; never inside the repo),
# BENCH_SECONDS (10), BENCH_SYNTH_N (1000000), BENCH_CONCURRENCY ("1 16 64"), BENCH_KBS ("all synth"),
# BENCH_CT3_THREADS (ct3-server --threads values, each measured: default "$(nproc) 64"; cpp-httplib
# gives each open connection a worker thread, so with fewer threads than connections the extra
# connections wait for a free worker: the second value shows ct3 with a thread per connection),
# CT3_DATA_DIR (data root, default ../shared/data).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
build_kb=$build/kb/ct3-build-kb
server=$build/server/ct3-server
py=/usr/bin/python3
tools="$py $repo/scripts/bench/bench_tools.py"
work=${BENCH_DIR:-/tmp/ct3-bench}
seconds=${BENCH_SECONDS:-10}
synth_n=${BENCH_SYNTH_N:-1000000}
concurrency=${BENCH_CONCURRENCY:-1 16 64}
kbs=${BENCH_KBS:-all synth}
ct3_threads=${BENCH_CT3_THREADS:-$(nproc) 64}
data_root=${CT3_DATA_DIR:-$repo/../shared/data}
cores=$(nproc)
queries=200
xcheck_n=20

case "$(realpath -m "$work")/" in "$repo"/*) echo "error: BENCH_DIR=$work is inside the repository" >&2; exit 1;; esac
for f in "$build_kb" "$server"; do [ -x "$f" ] || { echo "error: $f not built (ninja -C build ct3-build-kb ct3-server)" >&2; exit 1; }; done
for t in wrk "$py"; do command -v "$t" >/dev/null || { echo "error: $t not found" >&2; exit 1; }; done
mkdir -p "$work"
results=$work/results.jsonl xcheck=$work/xcheck.jsonl
: >"$results"; : >"$xcheck"

say() { echo "[bench] $*" >&2; }
run() { echo "+ $*" >&2; "$@"; }

# Servers run in their own session (setsid: pid = process group id), so that stopping one also
# stops uvicorn's worker processes, which outlive a killed parent otherwise.
server_pid=
group_alive() { pgrep -s "$1" >/dev/null 2>&1; }
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM -- "-$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do group_alive "$server_pid" || break; sleep 0.1; done
  kill -KILL -- "-$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
# CPU ticks used so far by the server's processes.
group_ticks() {
  pgrep -s "$1" | while read -r p; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done |
    awk '{s += $1} END {print s + 0}'
}
# wrk abandons its in-flight requests at the end of a run, but a server still computes them (and
# then any it had queued); the next measurement starts only once the server is idle again.
wait_idle() {
  local a b
  for _ in $(seq 240); do
    a=$(group_ticks "$server_pid"); sleep 0.5; b=$(group_ticks "$server_pid")
    [ $((b - a)) -le 2 ] && return 0
  done
  say "warning: server still busy after 120 s"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

start_server() {  # kind (ct3-tN | peer) kb_dir -> sets server_pid, url
  local kind=$1 dir=$2 port
  port=$($tools free-port)
  url=http://127.0.0.1:$port
  if [ "$kind" != peer ]; then
    echo "+ $server --knowledge_base_path $dir --port $port --threads ${kind#ct3-t} --log-level warn" >&2
    setsid "$server" --knowledge_base_path "$dir" --port "$port" --threads "${kind#ct3-t}" --log-level warn >"$work/$kind.log" 2>&1 &
  else
    echo "+ $py scripts/peer_server.py --kb $dir --port $port --workers $cores" >&2
    setsid "$py" "$repo/scripts/peer_server.py" --kb "$dir" --port "$port" --workers "$cores" >"$work/$kind.log" 2>&1 &
  fi
  server_pid=$!
  if ! $tools wait-health "$url" 600; then tail -20 "$work/$kind.log" >&2; exit 1; fi
}

# --- 1. knowledge bases ---
build_if_missing() {  # dir args...
  local dir=$1; shift
  if [ -f "$dir/manifest.json" ]; then say "reusing $dir"; return; fi
  run "$build_kb" "$@" --save_dir "$dir" --log-level info >"$dir.summary.json"
}
kb_dirs=()
for kb in $kbs; do
  case $kb in
    all) build_if_missing "$work/kb_all" --datasets all --data_root "$data_root"; kb_dirs+=("$work/kb_all");;
    synth)
      d=$work/kb_synth_$synth_n
      if [ ! -f "$d/manifest.json" ]; then
        [ -f "$work/synth_$synth_n.jsonl" ] || run $tools synth "$synth_n" "$work/synth_$synth_n.jsonl"
        build_if_missing "$d" --datasets "$work/synth_$synth_n.jsonl" --template '{text}'
      fi
      kb_dirs+=("$d");;
    *) echo "error: BENCH_KBS entry '$kb' is not all or synth" >&2; exit 1;;
  esac
done

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "cores $cores, load average $load_start"

# --- 2-4. per KB: query bodies, load tests, cross-check dumps ---
for dir in "${kb_dirs[@]}"; do
  name=$(basename "$dir")
  dim=$($py -c 'import json,sys;print(json.load(open(sys.argv[1]))["dim"])' "$dir/manifest.json")
  kinds=()
  for t in $ct3_threads; do kinds+=("ct3-t$t"); done
  kinds+=(peer)
  for kind in "${kinds[@]}"; do
    start_server "$kind" "$dir"
    say "$kind on $name at $url (pid $server_pid)"
    if [ "$kind" != peer ] && [ ! -f "$work/$name.queries.faiss.jsonl" ]; then
      if [ "$name" = kb_all ]; then
        run $tools embed-bodies "$url" "$data_root/gsm8k/test.jsonl" "$queries" "$work/$name.queries"
      else
        run $tools random-bodies "$dim" "$queries" 7 "$work/$name.queries"
      fi
    fi
    for mode in faiss sift; do
      bodies=$work/$name.queries.$mode.jsonl
      if [ "$kind" = "${kinds[0]}" ] || [ "$kind" = peer ]; then  # cross-check dumps: first ct3 config and the peer
        run $tools dump "$url" "$bodies" "$xcheck_n" "$work/xcheck.$name.${kind%%-*}.$mode.json"
      fi
      BENCH_BODIES=$bodies wrk -t1 -c4 -d1s --timeout 30s -s "$repo/scripts/bench/search.lua" "$url" >/dev/null  # warm-up
      wait_idle
      for c in $concurrency; do
        t=$(( c < 2 ? c : 2 ))
        # wrk only counts requests that finish inside the window; at c >= 64 a slow server's first
        # wave can take longer than BENCH_SECONDS, so those runs get twice the time.
        secs=$(( c >= 64 ? 2 * seconds : seconds ))
        echo "+ BENCH_BODIES=$bodies wrk -t$t -c$c -d${secs}s --timeout 30s -s scripts/bench/search.lua $url" >&2
        line=$(BENCH_BODIES=$bodies wrk -t"$t" -c"$c" -d"${secs}s" --timeout 30s -s "$repo/scripts/bench/search.lua" "$url" | grep '^{' | tail -1)
        echo "  $line" >&2
        $py -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(kb=sys.argv[2], server=sys.argv[3], mode=sys.argv[4], concurrency=int(sys.argv[5])); print(json.dumps(r))' \
          "$line" "$name" "$kind" "$mode" "$c" >>"$results"
        wait_idle
      done
    done
    stop_server
  done
  for mode in faiss sift; do
    $tools compare "$work/xcheck.$name.ct3.$mode.json" "$work/xcheck.$name.peer.$mode.json" |
      $py -c 'import json,sys; r=json.load(sys.stdin); r.update(kb=sys.argv[1], mode=sys.argv[2]); print(json.dumps(r))' "$name" "$mode" >>"$xcheck"
  done
done

# --- 5. report ---
$py - "$work/meta.json" "$seconds" "$cores" "$load_start" "$queries" "$concurrency" "$ct3_threads" "${kb_dirs[@]}" <<'PY'
import json, os, sys, time, faiss
out, seconds, cores, load_start, queries, conc, threads, dirs = *sys.argv[1:8], sys.argv[8:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
kbs = []
for d in dirs:
    m = json.load(open(os.path.join(d, "manifest.json")))
    name = os.path.basename(d)
    kbs.append({"name": name, "count": m["count"], "dim": m["dim"], "index": m["index"]["factory"],
                "texts_per_second": m["build"]["texts_per_second"], "seconds": m["build"]["seconds"],
                "queries": "gsm8k test questions via /v1/embeddings" if name == "kb_all" else "random unit vectors"})
json.dump({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu, "cores": int(cores), "mem": mem,
           "load_start": load_start, "load_end": " ".join(open("/proc/loadavg").read().split()[:3]),
           "faiss": faiss.__version__, "seconds": int(seconds), "queries": int(queries),
           "concurrency": [int(c) for c in conc.split()], "ct3_threads": [int(t) for t in threads.split()],
           "kbs": kbs}, open(out, "w"))
PY
$tools table "$results" "$xcheck" "$work/meta.json" | tee "$work/report.md"
