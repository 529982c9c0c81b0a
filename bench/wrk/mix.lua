package.path = package.path .. ";" .. (os.getenv("OOB_WRK_DIR") or "bench/wrk") .. "/?.lua"
require "common"
-- The realistic mix: 1 authenticate : 5 polls : 1 decision.
local step = 0
function init(args) bench_init(args) end
function request()
   step = step % 7 + 1
   if step == 1 then return authenticate_request() end
   if step == 7 then return decision_request() end
   return poll_request()
end
