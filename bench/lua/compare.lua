-- wrk script for bench/compare.py: one request shape, a pool of bearer
-- tokens, and a count of every response by status (and reason), printed
-- with the latency percentiles as one JSON line at the end.
--
-- Environment (read by every wrk thread):
--   BENCH_TOKENS      file of tokens, one per line. One token: wrk's static
--                     request (built once). More: each request takes the
--                     next token of this thread's slice of the pool.
--   BENCH_THREADS     wrk's -t, so that thread k uses tokens k, k+T, k+2T, ...
--                     (the threads never send the same token at the same time)
--   BENCH_METHOD      request method (default GET); the URL gives the path
--   BENCH_FULL_BYTES  length of the upstream's whole body: a 2xx response
--                     with a shorter body is counted as "<status> cut"
--   BENCH_RECORD_MARK a string each record of the body carries once (e.g.
--                     '"email":'): its occurrences in 2xx bodies are summed
--                     and reported as "records" (records delivered)
--
-- A response is counted under "<status>", or "<status> <reason>" when the
-- body names one: Palisade's JSON replies carry "reason": "...", and Envoy's
-- own short replies ("RBAC: access denied", "local_rate_limited") are used
-- as they are.

local tokens = {}
do
  local path = assert(os.getenv("BENCH_TOKENS"), "BENCH_TOKENS is not set")
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    if #line > 0 then
      tokens[#tokens + 1] = line
    end
  end
  file:close()
  assert(#tokens > 0, "no tokens in " .. path)
end

local method = os.getenv("BENCH_METHOD") or "GET"
local full_bytes = tonumber(os.getenv("BENCH_FULL_BYTES") or "")
local record_mark = os.getenv("BENCH_RECORD_MARK")
if record_mark == "" then
  record_mark = nil
end

wrk.method = method
wrk.headers["Authorization"] = "Bearer " .. tokens[1]

-- Main state: the threads, to collect their counts in done().
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

-- Thread state. `counts` and `records` are global so that done() can read
-- them per thread.
counts = {}
records = 0

if #tokens > 1 then
  local next_index, step, headers

  function init(args)
    step = tonumber(os.getenv("BENCH_THREADS") or "1")
    next_index = tid or 0
    headers = { Host = wrk.headers["Host"] }
  end

  function request()
    headers["Authorization"] = "Bearer " .. tokens[next_index % #tokens + 1]
    next_index = next_index + step
    return wrk.format(method, nil, headers)
  end
end

function response(status, headers, body)
  local key = tostring(status)
  if status < 300 then
    if full_bytes and #body < full_bytes then
      key = key .. " cut"
    end
    if record_mark then
      local at = 1
      while true do
        local found = string.find(body, record_mark, at, true)
        if not found then
          break
        end
        records = records + 1
        at = found + #record_mark
      end
    end
  else
    local reason = body:match('"reason"%s*:%s*"([%w_]+)"')
    if not reason and #body > 0 and #body <= 40 and body:match("^[%w_: ]+$") then
      reason = body
    end
    if reason then
      key = key .. " " .. reason
    end
  end
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  local delivered = 0
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("counts")) do
      merged[key] = (merged[key] or 0) + n
    end
    delivered = delivered + thread:get("records")
  end
  local mix = {}
  for key, n in pairs(merged) do
    mix[#mix + 1] = string.format("%q: %d", key, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %.1f, "p75": %.1f, "p90": %.1f, '
      .. '"p99": %.1f, "p99.9": %.1f, "max": %.1f}, "status": {%s}, "records": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    table.concat(mix, ", "), delivered))
end
