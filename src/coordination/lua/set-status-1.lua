-- KEYS[1] stream hash; ARGV: epoch, status, owner, pid, updated_at ('' = null: field removed).
-- Fenced: a writer whose lease epoch is older than the stored one is a stale owner.
local stored = redis.call('HGET', KEYS[1], 'epoch')
if stored and tonumber(stored) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'status', ARGV[2], 'updated_at', ARGV[5])
local optional = { owner = ARGV[3], pid = ARGV[4] }
for field, value in pairs(optional) do
  if value == '' then
    redis.call('HDEL', KEYS[1], field)
  else
    redis.call('HSET', KEYS[1], field, value)
  end
end
return 1
