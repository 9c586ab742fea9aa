-- wrk script for the local answers (bench/local.py): one path, asked again and again.
--
--   wrk -s bench/local.lua URL -- PATH            GET PATH, no credential
--   wrk -s bench/local.lua URL -- PATH TOKEN      GET PATH with Authorization: Bearer TOKEN
--   wrk -s bench/local.lua URL -- PATH refused    GET PATH, every other request without a
--                                                 credential, the others with a wrong token
--
-- done() prints one line "BENCH_JSON {...}" that bench/bench.py parses.

local reqs = {}
local i = 0

function init(args)
   local path = args[1] or "/healthz"
   local cred = args[2]
   if cred == "refused" then
      reqs[1] = wrk.format("GET", path)
      reqs[2] = wrk.format("GET", path, {["Authorization"] = "Bearer wrong-token-0123456789abcdef"})
   elseif cred ~= nil and cred ~= "" then
      reqs[1] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. cred})
   else
      reqs[1] = wrk.format("GET", path)
   end
end

function request()
   i = i % #reqs + 1
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
