-- wrk: the mixed workload, per 10 requests: 3 me, 3 members, 3 flags, 1 usage write.
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function request()
  counter = counter + 1
  local auth = { ["Authorization"] = "Bearer " .. os.getenv("TOKEN"), ["Content-Type"] = "application/json" }
  local slot = counter % 10
  if slot < 3 then
    return wrk.format("GET", "/api/auth/me", auth)
  elseif slot < 6 then
    return wrk.format("GET", os.getenv("PATH_MEMBERS"), auth)
  elseif slot < 9 then
    return wrk.format("GET", os.getenv("PATH_FLAGS"), auth)
  end
  local body = string.format(
    '{"metric":"bench_mixed","quantity":1,"idempotency_key":"mixed-%s-%d-%d"}',
    os.getenv("RUN_ID") or "run", thread_id, counter)
  return wrk.format("POST", os.getenv("PATH_USAGE"), auth, body)
end
