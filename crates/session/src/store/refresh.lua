-- The record layout's sliding refresh: a new `__exp` (and `__idx`, unless ARGV[2] is '') and
-- TTL on the record as it is stored now, so a change made since the read is kept.
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local rest = string.match(value, '^{"__exp":%d+(.*)$')
if not rest then return redis.error_reply('ERR not a tower-scale session record') end
if ARGV[2] ~= '' then
  rest = ',"__idx":' .. ARGV[2] .. (string.match(rest, '^,"__idx":%d+(.*)$') or rest)
end
redis.call('SET', KEYS[1], '{"__exp":' .. ARGV[1] .. rest, 'PX', ARGV[3], 'XX')
return 1
