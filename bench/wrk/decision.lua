package.path = package.path .. ";" .. (os.getenv("OOB_WRK_DIR") or "bench/wrk") .. "/?.lua"
require "common"
function init(args) bench_init(args) end
function request() return decision_request() end
