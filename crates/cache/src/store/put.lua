local ttl = tonumber(ARGV[1])
local n = #KEYS - 1
for i = 1, n do
  redis.call('SET', KEYS[i + 1], ARGV[n + 1 + i], 'PX', ttl)
end
redis.call('SADD', KEYS[1], unpack(ARGV, 2, n + 1))
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
