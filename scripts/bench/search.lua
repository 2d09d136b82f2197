-- wrk script for POST /v1/search (scripts/bench_retrieval.sh, scripts/replicas_nginx.sh).
--
--   BENCH_BODIES=queries.jsonl wrk -t2 -c16 -d10s --timeout 30s -s scripts/bench/search.lua http://127.0.0.1:8000
--
-- Reads BENCH_BODIES (one JSON request body per line) in every thread and POSTs the bodies round
-- robin (each thread starts at a different line) to BENCH_PATH (default /v1/search). done() prints
-- one JSON line: {requests, errors, non2xx, socket_errors, duration_s, qps, p50_ms, p99_ms}, where
-- errors = non-2xx responses (counted in response(), since wrk's own status count misses 1xx/3xx)
-- + socket errors (connect, read, write, timeout).

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local bodies = {}
local cursor = 1
local path = os.getenv("BENCH_PATH") or "/v1/search"
non2xx = 0

function init(args)
   local file = os.getenv("BENCH_BODIES")
   if not file then error("search.lua: set BENCH_BODIES to a file of JSON request bodies, one per line") end
   local f = io.open(file, "r")
   if not f then error("search.lua: cannot open BENCH_BODIES=" .. file) end
   for line in f:lines() do
      if #line > 0 then table.insert(bodies, line) end
   end
   f:close()
   if #bodies == 0 then error("search.lua: " .. file .. " has no request bodies") end
   cursor = (id * 7919) % #bodies + 1
   wrk.method = "POST"
   wrk.path = path
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   local body = bodies[cursor]
   cursor = cursor % #bodies + 1
   return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
   if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
   local bad = 0
   for _, t in ipairs(threads) do bad = bad + (t:get("non2xx") or 0) end
   local e = summary.errors
   local socket = e.connect + e.read + e.write + e.timeout
   local seconds = summary.duration / 1e6
   io.write(string.format(
      '{"requests": %d, "errors": %d, "non2xx": %d, "socket_errors": %d, "duration_s": %.3f, ' ..
      '"qps": %.2f, "p50_ms": %.3f, "p99_ms": %.3f}\n',
      summary.requests, bad + socket, bad, socket, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
