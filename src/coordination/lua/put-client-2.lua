-- KEYS[1] client hash, KEYS[2] its stream hash; ARGV[1] ttl (ms), ARGV[2] '1' = only if
-- absent, then field/value pairs. Replaces the record whole (a field now null disappears)
-- and counts a new client in the stream's advisory client_count (listClients corrects what
-- expiry leaves behind). Returns 0 when only-if-absent found a record.
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local existed = redis.call('DEL', KEYS[1]) == 1
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if not existed and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'client_count', 1)
end
return 1
