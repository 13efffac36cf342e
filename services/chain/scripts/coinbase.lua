-- coinbase: the block's emission, after its extrinsics: mint the block reward into the subnets'
-- pending emission (split by root consensus) and apply the burn adjustments due at this block.
-- Journaled as the pending block's 'coinbase' step, so a resumed block never mints twice.
-- KEYS[1] lease, KEYS[2] pending_results, KEYS[3] issuance, KEYS[4] minted, KEYS[5] pending_emission,
-- KEYS[6..] the info hash of each subnet, in ARGV order
-- ARGV[1] lease token, ARGV[2] issuance the plan was computed from, ARGV[3] reward (rao; the sum of
-- the subnets' amounts), ARGV[4] block, ARGV[5] result JSON to journal,
-- ARGV[6..] per subnet: amount (rao), new burn (rao, or '' when no adjustment is due)
-- Reply: the result JSON.
local denied = require_lease(KEYS[1], ARGV[1])
if denied then return denied end
local done = redis.call('HGET', KEYS[2], 'coinbase')
if done then return done end
local issuance = redis.call('GET', KEYS[3]) or '0'
if issuance ~= ARGV[2] then
  return redis.error_reply('STATE_CHANGED issuance is ' .. issuance .. ', the plan assumed ' .. ARGV[2])
end
redis.call('INCRBY', KEYS[3], ARGV[3])
redis.call('INCRBY', KEYS[4], ARGV[3])
redis.call('INCRBY', KEYS[5], ARGV[3])
for i = 6, #KEYS do
  local amount, burn = ARGV[6 + 2 * (i - 6)], ARGV[7 + 2 * (i - 6)]
  redis.call('HINCRBY', KEYS[i], 'pending', amount)
  redis.call('HSET', KEYS[i], 'last_emission', amount)
  if burn ~= '' then
    redis.call('HSET', KEYS[i], 'burn', burn, 'regs_interval', '0', 'last_adjustment', ARGV[4])
  end
end
redis.call('HSET', KEYS[2], 'coinbase', ARGV[5])
return ARGV[5]
