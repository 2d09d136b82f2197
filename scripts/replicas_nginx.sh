#!/usr/bin/env bash
# Scale-out demo: two stateless ct3-server replicas over one KB behind nginx, on loopback.
#
#   scripts/replicas_nginx.sh [build-dir]        exits 0 when every check passes (< 30 s)
#
# 1. Builds a small KB once (gsm8k train, --limit 500) in $CT3_REPLICAS_DIR (default /tmp/ct3-replicas).
# 2. Starts two ct3-server replicas on free loopback ports over that same KB folder (replicas share
#    nothing but the read-only folder, so any number can serve it).
# 3. Writes an nginx config into a temp folder (upstream with both replicas, round robin, keepalive
#    connections, retry on the next replica when one refuses or drops a connection; pid, logs and temp
#    paths in the temp folder, nginx run in the foreground as a background job of this script).
# 4. wrk through nginx: c=16 for 5 s of POST /v1/search (text queries: gsm8k test questions, sift).
#    Checks: zero errors; both replicas served /v1/search (their /metrics request counters > 0).
# 5. Kills one replica (SIGKILL) and checks that requests through nginx still all succeed: 20
#    sequential requests and a 2 s wrk run with zero errors, all served by the survivor.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
server=$build/server/ct3-server
build_kb=$build/kb/ct3-build-kb
py=/usr/bin/python3
tools="$py $repo/scripts/bench/bench_tools.py"
nginx=${NGINX:-/usr/sbin/nginx}
data_root=${CT3_DATA_DIR:-$repo/../shared/data}
state=${CT3_REPLICAS_DIR:-/tmp/ct3-replicas}
kb=$state/kb_gsm8k_500

for f in "$server" "$build_kb" "$nginx"; do [ -x "$f" ] || { echo "error: $f missing" >&2; exit 1; }; done
command -v wrk >/dev/null || { echo "error: wrk not found (apt-get install wrk)" >&2; exit 1; }
say() { echo "[replicas] $*" >&2; }
die() {
  echo "[replicas] FAIL: $*" >&2
  [ -s "${tmp:-}/error.log" ] && { echo "--- nginx error.log (first errors)" >&2; grep -v "no live upstreams" "$tmp/error.log" | tail -n 8 >&2; }
  exit 1
}

tmp=$(mktemp -d /tmp/ct3-nginx.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. KB
mkdir -p "$state"
if [ ! -f "$kb/manifest.json" ]; then
  say "building $kb"
  "$build_kb" --datasets gsm8k --limit 500 --data_root "$data_root" --save_dir "$kb" --log-level warn >/dev/null
fi

# 2. replicas
ports=()
for r in 1 2; do
  port=$($tools free-port)
  ports+=("$port")
  # ct3-server (cpp-httplib) holds one worker thread per open connection, so a replica needs at
  # least as many threads as nginx may open to it (up to the 16 client connections here);
  # searches themselves are batched by the retriever whatever the thread count.
  "$server" --knowledge_base_path "$kb" --port "$port" --threads 16 --log-level warn >"$tmp/replica$r.log" 2>&1 &
  pids+=($!)
  say "replica $r: pid ${pids[-1]} on 127.0.0.1:$port"
done
for r in 0 1; do $tools wait-health "http://127.0.0.1:${ports[$r]}" 30 || { cat "$tmp/replica$((r + 1)).log" >&2; die "replica $((r + 1)) not healthy"; }; done

# 3. nginx
nport=$($tools free-port)
mkdir -p "$tmp/body" "$tmp/proxy" "$tmp/fastcgi" "$tmp/uwsgi" "$tmp/scgi"
cat >"$tmp/nginx.conf" <<CONF
# ct3 replicas behind nginx (written by scripts/replicas_nginx.sh)
user $(id -un) $(id -gn);   # only meaningful (and needed) when started as root
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
lock_file $tmp/nginx.lock;
error_log $tmp/error.log warn;
events { worker_connections 1024; }
http {
  access_log $tmp/access.log;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  client_max_body_size 8m;
  upstream ct3 {
    # Round robin over stateless replicas; a replica that fails twice is skipped for 5 s.
    server 127.0.0.1:${ports[0]} max_fails=2 fail_timeout=5s;
    server 127.0.0.1:${ports[1]} max_fails=2 fail_timeout=5s;
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass http://ct3;
      proxy_http_version 1.1;
      proxy_set_header Connection "";   # keep upstream connections alive
      proxy_connect_timeout 2s;
      proxy_read_timeout 30s;
      # Searches are idempotent reads, so a POST may be retried on the other replica.
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 2;
    }
  }
}
CONF
"$nginx" -t -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" 2>"$tmp/nginx-t.log" || { cat "$tmp/nginx-t.log" >&2; die "nginx -t"; }
"$nginx" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" &
pids+=($!)
front=http://127.0.0.1:$nport
for _ in $(seq 50); do curl -sf -o /dev/null "$front/health" && break; sleep 0.1; done
curl -sf -o /dev/null "$front/health" || { cat "$tmp/error.log" >&2; die "nginx not answering on $front"; }
say "nginx (pid ${pids[-1]}) on $front -> replicas ${ports[*]}"

# 4. load test through nginx
$py - "$data_root/gsm8k/test.jsonl" "$tmp/bodies.jsonl" <<'PY'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for i, line in zip(range(100), f):
        out.write(json.dumps({"query": json.loads(line)["question"], "k": 16, "mode": "sift"}) + "\n")
PY
load() {  # seconds connections -> prints wrk's JSON line
  BENCH_BODIES=$tmp/bodies.jsonl wrk -t2 -c"$2" -d"$1"s --timeout 10s -s "$repo/scripts/bench/search.lua" "$front" | grep '^{' | tail -1
}
search_count() {  # port -> /v1/search requests counted by that replica's /metrics
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk '/^ct3_http_requests_total\{/ && /\/v1\/search/ { n += $NF } END { printf "%d\n", n }'
}
json_field() { $py -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

say "+ wrk -t2 -c16 -d5s -s scripts/bench/search.lua $front"
r=$(load 5 16)
say "  $r"
[ "$(json_field "$r" errors)" = 0 ] || die "errors through nginx: $r"
[ "$(json_field "$r" requests)" -gt 0 ] || die "no requests completed"
n1=$(search_count "${ports[0]}") n2=$(search_count "${ports[1]}")
say "replica 1 served $n1 searches, replica 2 served $n2"
[ "$n1" -gt 0 ] && [ "$n2" -gt 0 ] || die "both replicas should serve requests (got $n1 and $n2)"

# 5. failover
say "killing replica 1 (pid ${pids[0]}, SIGKILL)"
kill -KILL "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
before=$(search_count "${ports[1]}")
body=$(head -1 "$tmp/bodies.jsonl")
for i in $(seq 20); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "$front/v1/search")
  [ "$code" = 200 ] || die "request $i after the kill got HTTP $code"
done
say "20/20 sequential requests after the kill: HTTP 200"
say "+ wrk -t2 -c16 -d2s (one replica left)"
r=$(load 2 16)
say "  $r"
[ "$(json_field "$r" errors)" = 0 ] || die "errors after failover: $r"
after=$(search_count "${ports[1]}")
served=$(( after - before ))
expected=$(( 20 + $(json_field "$r" requests) ))
[ "$served" -ge "$expected" ] || die "replica 2 served $served searches after the kill, expected >= $expected"
say "replica 2 served all $served requests after the kill"
say "OK: load balanced over 2 replicas with 0 errors; failover to 1 replica with 0 errors"
