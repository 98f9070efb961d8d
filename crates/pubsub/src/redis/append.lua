-- Adds a message to a room's stream, capped at about ARGV[3] entries (MAXLEN ~), and sets the
-- stream to expire ARGV[5] ms from now, so the stream of a room nobody publishes to goes away.
--
-- With ARGV[4] > 0 (a retried publish), the message is not added again when an earlier attempt
-- (same message id ARGV[1]) is among the latest ARGV[4] entries; its entry id is returned.
--
-- KEYS[1] the stream; ARGV[1] the message id (field m), ARGV[2] the payload (field d).
local stream = KEYS[1]
if tonumber(ARGV[4]) > 0 then
  local recent = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', ARGV[4])
  for i = 1, #recent do
    local fields = recent[i][2]
    if fields[1] == 'm' and fields[2] == ARGV[1] then
      redis.call('PEXPIRE', stream, ARGV[5])
      return recent[i][1]
    end
  end
end
local id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', stream, ARGV[5])
return id
