-- pay_epoch: store one subnet's epoch results and pay the emission it handed out, as stake.
-- Journaled as the pending block's 'epoch:<netuid>' step, so a resumed block never pays twice.
-- KEYS[1] lease, KEYS[2] pending_results, KEYS[3] pending_emission, KEYS[4] total_stake,
-- KEYS[5] stake by hotkey, KEYS[6] subnet info, KEYS[7] out, KEYS[8] permit, KEYS[9] pruning, KEYS[10] bonds
-- ARGV[1] lease token, ARGV[2] journal field, ARGV[3] result JSON, ARGV[4] block,
-- ARGV[5] the subnet's pending emission the plan split (rao), ARGV[6] paid = sum of credits (rao),
-- ARGV[7] permit bytes, ARGV[8] pruning (packed u16), ARGV[9] credits: lines 'hotkey coldkey rao\n',
-- ARGV[10] key prefix of a hotkey's nominators hash, ARGV[11] key prefix of a coldkey's stakes hash,
-- ARGV[12] number of out fields F, then F (field, packed vector) pairs, then B, then B (uid, bond row) pairs
-- The nominators and stakes hashes of each credit are named prefix .. address rather than listed in
-- KEYS: a 4096-uid epoch has ~4100 credits, and sending them as 8000 KEYS and 12000 ARGV costs
-- more than the whole script takes to run. (This chain runs on one Redis instance, not a cluster.)
-- What the plan did not pay (rounding dust, or all of it when nobody can be paid) stays pending
-- and is handed to the next epoch.
local denied = require_lease(KEYS[1], ARGV[1])
if denied then return denied end
local done = redis.call('HGET', KEYS[2], ARGV[2])
if done then return done end
local pending = redis.call('HGET', KEYS[6], 'pending') or '0'
if pending ~= ARGV[5] then
  return redis.error_reply('STATE_CHANGED pending emission is ' .. pending .. ', the plan split ' .. ARGV[5])
end
local paid = ARGV[6]
hdecr(KEYS[6], 'pending', paid)
redis.call('DECRBY', KEYS[3], paid)
redis.call('INCRBY', KEYS[4], paid)
redis.call('HSET', KEYS[6], 'last_epoch', ARGV[4])
redis.call('SET', KEYS[8], ARGV[7])
redis.call('SET', KEYS[9], ARGV[8])
for hotkey, coldkey, amount in string.gmatch(ARGV[9], '(%S+) (%S+) (%d+)\n') do
  redis.call('HINCRBY', KEYS[5], hotkey, amount)
  redis.call('HINCRBY', ARGV[10] .. hotkey, coldkey, amount)
  redis.call('HINCRBY', ARGV[11] .. coldkey, hotkey, amount)
end
local at = 13
redis.call('DEL', KEYS[7])
for _ = 1, tonumber(ARGV[12]) do
  redis.call('HSET', KEYS[7], ARGV[at], ARGV[at + 1])
  at = at + 2
end
local rows = tonumber(ARGV[at])
at = at + 1
redis.call('DEL', KEYS[10])
for _ = 1, rows do
  redis.call('HSET', KEYS[10], ARGV[at], ARGV[at + 1])
  at = at + 2
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return ARGV[3]
