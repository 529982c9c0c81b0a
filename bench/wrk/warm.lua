package.path = package.path .. ";" .. (os.getenv("OOB_WRK_DIR") or "bench/wrk") .. "/?.lua"
require "common"
-- One pass over the poll targets before the poll runs (each thread walks its share of the ids),
-- as D1's polls follow the Authenticate that created them: what the engine has seen once it can
-- answer from memory, PENDING included (see README, "Polls from memory").
-- Optional 8th argument: the id prefix to walk (default "poll-", the poll scenario's targets).
local walked = 0
local target = "poll-"
function init(args)
   bench_init(args)
   target = args[8] or target
end
function request()
   local n = (thread_number + walked * thread_count - 1) % pool + 1
   walked = walked + 1
   return wrk.format("GET", "/banking/d1/v1/issuers/" .. issuer .. "/consumers/" .. consumer
      .. "/authentication/" .. target .. n, {["Authorization"] = "Bearer " .. token})
end
