local key = KEYS[1]
-- A session hash always holds `__exp`: without it (no key) there is no session to update.
local got = redis.call('HMGET', key, '__exp', '__user', '__end')
if not got[1] then return {0, false} end
local user = ARGV[3]
local previous, ends = got[2], got[3]
local ttl = ARGV[1]
local exp = ARGV[2]
if ends and tonumber(ends) < tonumber(exp) then
  ttl = string.format('%d', math.max(1, tonumber(ttl) - (tonumber(exp) - tonumber(ends))))
  exp = ends
end
local args = {'__exp', exp}
if user ~= '' then
  args[3] = '__user'
  args[4] = user
end
local n = tonumber(ARGV[4])
for i = 5, 4 + 2 * n do args[#args + 1] = ARGV[i] end
redis.call('HSET', key, unpack(args))
if #ARGV > 4 + 2 * n then redis.call('HDEL', key, unpack(ARGV, 5 + 2 * n)) end
redis.call('PEXPIRE', key, ttl)
return {1, previous}
