-- KEYS[1] client hash, KEYS[2] its stream hash. Deletes the record and uncounts it.
if redis.call('DEL', KEYS[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('HINCRBY', KEYS[2], 'client_count', -1) < 0 then
    redis.call('HSET', KEYS[2], 'client_count', 0)
  end
end
return 1
