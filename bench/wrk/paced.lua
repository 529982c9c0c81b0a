package.path = package.path .. ";" .. (os.getenv("OOB_WRK_DIR") or "bench/wrk") .. "/?.lua"
require "common"
-- scripts/bench's p99 runs: the scenario named by the 9th argument, each connection waiting
-- on average args[8] milliseconds between its requests (randomised rounding, since wrk's delay
-- hook counts whole milliseconds), so that the offered load sits near a chosen rate.
local scenario
local pause
function init(args)
   bench_init(args)
   pause = tonumber(args[8]) or 0
   scenario = args[9] or "poll"
end
function delay()
   local whole = math.floor(pause)
   if math.random() < pause - whole then return whole + 1 end
   return whole
end
local step = 0
function request()
   if scenario == "authenticate" then return authenticate_request() end
   if scenario == "decision" then return decision_request() end
   if scenario == "mix" then
      step = step % 7 + 1
      if step == 1 then return authenticate_request() end
      if step == 7 then return decision_request() end
   end
   return poll_request()
end
