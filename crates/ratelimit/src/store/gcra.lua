local n = #KEYS
local peek = ARGV[2 * n + 1] == 'peek'
local function ahead(i)
  local whole = ARGV[2 * i - 1] % 1000 == 0
  local ms = redis.call('PTTL', KEYS[i])
  if ms <= 0 then return 0, whole, false end
  if whole then return ms * 1000, whole, true end
  local r = tonumber(redis.pcall('GET', KEYS[i]))
  if not r or r < 0 or r >= 1000 then r = 0 end
  return ms * 1000 - r, whole, true
end
local function advance(i, d, whole, live)
  local t = d + ARGV[2 * i - 1]
  if t <= 0 then return 0 end
  if whole and live then
    redis.call('PEXPIRE', KEYS[i], t / 1000)
  elseif whole then
    redis.call('SET', KEYS[i], '', 'PX', ARGV[2 * i - 1] / 1000)
  else
    local ms = math.ceil(t / 1000)
    redis.call('SET', KEYS[i], ms * 1000 - t, 'PX', ms)
  end
  return t
end
if n == 1 then
  local d, whole, live = ahead(1)
  if d + ARGV[1] > tonumber(ARGV[2]) then return -1 - d end
  if peek then return d end
  return advance(1, d, whole, live)
end
local ok, d, whole, live, out = true, {}, {}, {}, {}
for i = 1, n do
  d[i], whole[i], live[i] = ahead(i)
  if d[i] + ARGV[2 * i - 1] > tonumber(ARGV[2 * i]) then ok = false end
end
for i = 1, n do
  if not ok then
    out[i] = -1 - d[i]
  elseif peek then
    out[i] = d[i]
  else
    out[i] = advance(i, d[i], whole[i], live[i])
  end
end
return out
