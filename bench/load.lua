-- wrk script of the platform benchmark: POST Alertmanager webhook bodies (version 4) of
-- `size` alerts, every alert new (its own seq and fingerprint), so the platform records
-- and runs each one. Arguments after `--`: alertname phase size [token].
-- done() prints one JSON line the benchmark reads: requests, duration, errors.

local alertname, phase, size
local counter = 0
local thread_index = 0
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  alertname, phase, size = args[1], args[2], tonumber(args[3])
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[4] ~= nil and args[4] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[4]
  end
  starts = os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function alert(seq)
  return string.format(
    '{"status":"firing","labels":{"alertname":"%s","phase":"%s","seq":"%s",'
      .. '"instance":"host-%03d"},"annotations":{"summary":"bench alert %s"},'
      .. '"startsAt":"%s","fingerprint":"%s-%s"}',
    alertname, phase, seq, counter % 1000, seq, starts, phase, seq)
end

function request()
  local alerts = {}
  for i = 1, size do
    counter = counter + 1
    alerts[i] = alert(thread_index .. "-" .. counter)
  end
  local body = '{"version":"4","status":"firing","receiver":"vigil","groupKey":"{}:{phase=\\"'
    .. phase .. '\\"}","groupLabels":{"phase":"' .. phase .. '"},"alerts":['
    .. table.concat(alerts, ",") .. ']}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
      .. '"timeout":%d,"latency_p50_us":%d,"latency_p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
