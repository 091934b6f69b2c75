-- wrk: POST /api/orgs/{org}/usage with a key unique to this request, so every
-- request is a new, acknowledged write. Set by run.sh: PATH_USAGE, TOKEN.
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

-- Every key is new, so every answer below 400 is a 201 Created: an acknowledged
-- write, which run.sh then looks for in the database. (Counting in a response()
-- callback would slow wrk down, and every figure with it.)
function done(summary)
  io.write(string.format("acknowledged: %d\n", summary.requests - summary.errors.status))
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
