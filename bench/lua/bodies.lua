-- Posts precomputed bodies (one per line: path \t signature \t body) in order, one per request.
-- Each wrk thread takes every Nth line (N = thread count) so ids never repeat across threads.
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  nthreads = tonumber(args[2])
  lines = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id - 1 then
      table.insert(lines, line)
    end
    i = i + 1
  end
  index = 0
end

function request()
  index = index + 1
  local line = lines[((index - 1) % #lines) + 1]
  local path, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
  local headers = { ["Content-Type"] = "application/json" }
  if signature ~= "" then
    headers["X-Hub-Signature"] = signature
  end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"duration_us\": %d, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"errors_status\": %d, \"errors_connect\": %d, \"errors_timeout\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect, summary.errors.timeout))
end
