-- KEYS[1] stream hash; ARGV: created_at, definition JSON, url, kind.
-- Get-or-create: when the stream exists with another created_at, nothing is written and
-- that created_at is returned, so the caller re-sends the definition carrying it.
local created = redis.call('HGET', KEYS[1], 'created_at')
if created and created ~= ARGV[1] then
  return created
end
redis.call('HSET', KEYS[1], 'created_at', ARGV[1], 'definition', ARGV[2], 'url', ARGV[3], 'kind', ARGV[4])
redis.call('HSETNX', KEYS[1], 'client_count', 0)
return false
