local fields = redis.call('SMEMBERS', KEYS[1])
for _, f in ipairs(fields) do redis.call('DEL', ARGV[1] .. f) end
redis.call('DEL', unpack(KEYS))
return #fields
