-- wrk script: DELETE /contacts/{id}/tags/{name} with varying ids and tag names.
--
--   wrk -s bench/delete_tag.lua URL                 the gateway route (hcgw, nginx proxy)
--   wrk -s bench/delete_tag.lua URL -- direct KEY   the equivalent upstream call, sent straight
--                                                   to the upstream (the "direct" baseline):
--                                                   DELETE /v1/customers/{id}/tags with the
--                                                   JSON body and the Bearer key
--
-- The requests are built once in init() (N_REQ distinct id/name pairs, cycled through) so
-- that the Lua cost per request is the same small constant for every target. done() prints
-- one line "BENCH_JSON {...}" that bench/bench.py parses.

local N_REQ = 4096
local reqs = {}
local n = 0
local i = 0

function init(args)
   local mode = args[1] or "gateway"
   local key = args[2] or "bench-key"
   for k = 1, N_REQ do
      -- ids: 7 to 10 digits, no leading zero; names: letters, digits, '-' and '_'
      local id = tostring(1568834 + (k * 7919) % 900000000)
      local name = string.format("tag-%d_%s", k % 97, string.char(65 + k % 26, 97 + (k * 3) % 26))
      if mode == "direct" then
         local body = '{"tags":[{"name":"' .. name .. '"}]}'
         reqs[k] = wrk.format("DELETE", "/v1/customers/" .. id .. "/tags", {
            ["Authorization"] = "Bearer " .. key,
            ["Content-Type"] = "application/json",
            ["Accept"] = "application/json",
         }, body)
      else
         reqs[k] = wrk.format("DELETE", "/contacts/" .. id .. "/tags/" .. name)
      end
   end
   n = N_REQ
   -- each wrk thread starts at a different offset
   i = math.random(0, N_REQ - 1)
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
