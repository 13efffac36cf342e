-- release_lease: give up the block-production lease on a clean stop, so a standby or a restarted
-- process need not wait for it to lapse.
-- KEYS[1] lease. ARGV[1] our token. Reply: 1 if we held it, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
