-- KEYS[1] stream hash; ARGV[1] viewers allowed to remain (the caller's own, 0 or 1).
-- Check-and-delete in one step: 1 deleted, 0 busy (more live client records), -1 absent.
if redis.call('HEXISTS', KEYS[1], 'definition') == 0 then
  return -1
end
local count = tonumber(redis.call('HGET', KEYS[1], 'client_count') or '0') or 0
if count > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
