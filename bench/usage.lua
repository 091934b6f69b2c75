-- wrk: POST /api/orgs/{org}/usage with a key unique to this request, so every
-- request is a new, acknowledged write. Set by run.sh: PATH_USAGE, TOKEN.
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"metric":"bench_events","quantity":1,"idempotency_key":"%s-%d-%d"}',
    os.getenv("RUN_ID") or "run", thread_id, counter)
  return wrk.format("POST", os.getenv("PATH_USAGE"), {
    ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
    ["Content-Type"] = "application/json",
  }, body)
end
