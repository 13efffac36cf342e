-- lease: take the block-production lease if it is free, or renew it if we hold it.
-- KEYS[1] lease. ARGV[1] our token, ARGV[2] lease length in ms.
-- Reply: 1 if we hold the lease now, 0 if another process does.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
