-- KEYS[1] lease key, KEYS[2] its epoch counter; ARGV[1] token, ARGV[2] ttl (ms), ARGV[3]
-- '1' = ephemeral (a key used once: no counter kept, epoch 1).
-- Takes the lease only when free; every acquisition bumps the fencing epoch.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] == '1' then
    return 1
  end
  return redis.call('INCR', KEYS[2])
end
return 0
