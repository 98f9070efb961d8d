-- wrk script for scripts/dashboard-render.sh: a mix of the benchmark contract's scenarios, paced,
-- so the dashboard shows every panel at work. Each connection waits DELAY_MS (default 25)
-- between its requests; the mix, by share of requests:
--   30% GET /hello
--   20% GET /cached/{id}: 80% of them on 50 hot ids (hits once cached), the rest on 5,000 ids
--       (mostly misses); entries live 60 s, so the hot ids miss again every minute
--   15% GET /limited: 80% of them with the hot key `key-hot` (over its 100/s quota at the
--       default pace across both instances: some 429s), the rest over 200 keys
--   10% GET /session and 10% GET /whoami with a session cookie from an earlier /login
--       (a /login instead until one answered)
--    5% POST /login (its Set-Cookie feeds the pool of sessions)
--   10% GET /json with Accept-Encoding: gzip
-- usage: wrk -t1 -c16 -d150s -s scripts/lib/dashboard-traffic.lua http://127.0.0.1:3000

local delay_ms = tonumber(os.getenv("DELAY_MS") or "25")
local cookies = {}
local max_cookies = 256
local next_cookie = 0

local hello, json, login
local hot_ids, cold_ids = {}, {}
local hot_key, cold_keys = nil, {}

function init(args)
   math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
   hello = wrk.format("GET", "/hello")
   json = wrk.format("GET", "/json", { ["Accept-Encoding"] = "gzip" })
   login = wrk.format("POST", "/login")
   for i = 1, 50 do hot_ids[i] = wrk.format("GET", "/cached/hot-" .. i) end
   for i = 1, 5000 do cold_ids[i] = "/cached/cold-" .. i end
   hot_key = wrk.format("GET", "/limited", { ["x-api-key"] = "key-hot" })
   for i = 1, 200 do cold_keys[i] = wrk.format("GET", "/limited", { ["x-api-key"] = "key-" .. i }) end
end

local function with_session(path)
   if #cookies == 0 then return login end
   next_cookie = next_cookie % #cookies + 1
   return wrk.format("GET", path, { ["Cookie"] = cookies[next_cookie] })
end

function request()
   local r = math.random(100)
   if r <= 30 then return hello end
   if r <= 50 then
      if math.random(100) <= 80 then return hot_ids[math.random(#hot_ids)] end
      return wrk.format("GET", cold_ids[math.random(#cold_ids)])
   end
   if r <= 65 then
      if math.random(100) <= 80 then return hot_key end
      return cold_keys[math.random(#cold_keys)]
   end
   if r <= 75 then return with_session("/session") end
   if r <= 85 then return with_session("/whoami") end
   if r <= 90 then return login end
   return json
end

function delay()
   return delay_ms
end

-- Keeps the cookie of each new session (only /login sets one), the oldest replaced first.
function response(status, headers, body)
   local set = headers["set-cookie"] or headers["Set-Cookie"]
   if set == nil then return end
   local cookie = set:match("^([^;]+)")
   if cookie == nil then return end
   if #cookies < max_cookies then
      cookies[#cookies + 1] = cookie
   else
      cookies[math.random(max_cookies)] = cookie
   end
end
