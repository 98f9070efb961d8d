local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = #KEYS
local peek = ARGV[3 * n + 1] == 'peek'
local function tat_of(i)
  local s = tonumber(redis.call('GET', KEYS[i]))
  if s and s > now then return s, s - now end
  return s, 0
end
local function advance(i, s, d)
  local inc = tonumber(ARGV[3 * i - 2])
  local step = ARGV[3 * i] * 1000
  local tat = now + d + inc
  if s then
    local r
    if d > 0 then
      r = redis.pcall('INCRBY', KEYS[i], ARGV[3 * i - 2])
    else
      r = redis.pcall('INCRBY', KEYS[i], tat - s)
    end
    if type(r) == 'table' then
      s = nil
    elseif math.floor(s / step) ~= math.floor(tat / step) then
      redis.call('PEXPIREAT', KEYS[i], (math.floor(tat / step) + 2) * step / 1000)
    end
  end
  if not s then
    redis.call('SET', KEYS[i], tat, 'PXAT', (math.floor(tat / step) + 2) * step / 1000)
  end
  return d + inc
end
if n == 1 then
  local s, d = tat_of(1)
  if d + ARGV[1] > tonumber(ARGV[2]) then return -1 - d end
  if peek then return d end
  return advance(1, s, d)
end
local ok, stored, ahead, out = true, {}, {}, {}
for i = 1, n do
  stored[i], ahead[i] = tat_of(i)
  if ahead[i] + ARGV[3 * i - 2] > tonumber(ARGV[3 * i - 1]) then ok = false end
end
for i = 1, n do
  if not ok then
    out[i] = -1 - ahead[i]
  elseif peek then
    out[i] = ahead[i]
  else
    out[i] = advance(i, stored[i], ahead[i])
  end
end
return out
