local n = redis.call('SCARD', KEYS[1])
if n == 0 then return redis.call('EXISTS', unpack(KEYS, 2)) end
for i = 2, #KEYS do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i - 1]) == 0 then
    n = n + redis.call('EXISTS', KEYS[i])
  end
end
return n
