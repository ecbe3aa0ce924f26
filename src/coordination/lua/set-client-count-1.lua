-- KEYS[1] stream hash; ARGV[1] count. Corrects client_count of a stream that still exists
-- (never creates a hash for a deleted stream).
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'client_count', ARGV[1])
  return 1
end
return 0
