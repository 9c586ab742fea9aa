-- wrk script: GET /contacts/{id} over N_IDS distinct ids (the cache-hit phase, bench.py
-- --phases cachehit): every id is read once before the measured runs, so that each request
-- of a run is a hit, in hcgw's contact cache and in nginx's proxy_cache alike.
--
--   wrk -s bench/get_contact.lua URL            GET /contacts/{id}, ids 1568834 + k, k < N_IDS
--   wrk -s bench/get_contact.lua URL -- N       the same over N ids
--
-- done() prints one line "BENCH_JSON {...}" that bench/bench.py parses.

local N_IDS = 1000
local reqs = {}
local n = 0
local i = 0

function init(args)
   n = tonumber(args[1] or "") or N_IDS
   for k = 1, n do
      reqs[k] = wrk.format("GET", "/contacts/" .. tostring(1568833 + k))
   end
   -- each wrk thread starts at a different offset
   i = math.random(0, n - 1)
end

function request()
   i = i % n + 1
   return reqs[i]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
