-- wrk script for coatcheck's benchmark harness (benchmarks/run.py).
--   BENCH_COOKIES       file with one "name=value" Cookie header per line; requests cycle
--                       through them (none: requests carry no cookie)
--   BENCH_MAX_REQUESTS  stop after this many responses (0: only the -d duration bounds the run)
-- done() prints one line "BENCH_JSON {...}" with counts and latency percentiles in microseconds.

local requests_ = {}
local next_ = 0
local responses = 0
local max_requests = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "0") or 0

function init(args)
  local path = os.getenv("BENCH_COOKIES") or ""
  if path ~= "" then
    for line in io.lines(path) do
      if line ~= "" then
        requests_[#requests_ + 1] = wrk.format("GET", nil, { ["Cookie"] = line })
      end
    end
  end
  if #requests_ == 0 then
    requests_[1] = wrk.format("GET")
  end
end

function request()
  next_ = next_ % #requests_ + 1
  return requests_[next_]
end

function response(status, headers, body)
  responses = responses + 1
  if max_requests > 0 and responses >= max_requests then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
