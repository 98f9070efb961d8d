local user = redis.call('HGET', KEYS[1], '__user')
redis.call('DEL', KEYS[1])
return user
