-- Shared by the scripts/bench wrk scenarios. Each wrk thread gets its own number (setup), so
-- the ids it generates never collide with another thread's or another run's (the run prefix).
local counter = 0
local threads = {}

function setup(thread)
   thread:set("thread_number", #threads + 1)
   table.insert(threads, thread)
end

function bench_init(args)
   run = args[1]
   token = args[2]
   issuer = args[3] or "BENCH00001"
   consumer = args[4] or "bench-consumer"
   thread_count = tonumber(args[5]) or 1
   pool = tonumber(args[6]) or 10000
   app_token = args[7] or token
   math.randomseed(os.time() + thread_number * 7919)
end

function next_id()
   counter = counter + 1
   return counter
end

function authenticate_request()
   local id = run .. "-" .. thread_number .. "-" .. next_id()
   local body = '{"authenticationId":"' .. id .. '","operation":"3DS_CHALLENGE_OOB_ISSUER",'
      .. '"details":{"cardId":"card-1","panSuffix":"1234","acsTransactionId":"' .. id .. '",'
      .. '"purchase":{"merchantName":"Books & Co","amount":"78999","currencyCode":"EUR"}}}'
   return wrk.format("POST", "/banking/d1/v1/issuers/" .. issuer .. "/consumers/" .. consumer .. "/authentication",
      {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end

-- The poll requests are built once per thread: building each in Lua took CPU that the engine
-- shares with wrk on this machine (pgbench's client is a C loop).
local polls
function poll_request()
   if not polls then
      polls = {}
      for n = 1, pool do
         polls[n] = wrk.format("GET", "/banking/d1/v1/issuers/" .. issuer .. "/consumers/" .. consumer
            .. "/authentication/poll-" .. n, {["Authorization"] = "Bearer " .. token})
      end
   end
   return polls[math.random(1, pool)]
end

-- Decisions walk a pool of PENDING ids seeded for this run: thread t takes t, t+T, t+2T, ...
local decided = 0
function decision_request()
   local n = thread_number + decided * thread_count
   decided = decided + 1
   local body = '{"decision":"APPROVE","appInstanceId":"bench-app"}'
   return wrk.format("POST", "/app/v1/issuers/" .. issuer .. "/authentications/" .. run .. "-" .. n .. "/decision",
      {["Authorization"] = "Bearer " .. app_token, ["Content-Type"] = "application/json"}, body)
end
