-- genesis: write the genesis state once. A chain that already has one keeps it.
-- KEYS[1] genesis (hash), KEYS[2] free, KEYS[3] issuance, KEYS[4] burned, KEYS[5] head,
-- KEYS[6] block store, KEYS[7] block index, KEYS[8] subnets, KEYS[9] root info, KEYS[10] root hp
-- ARGV[1] genesis hash (hex), ARGV[2] Block 0 bytes, ARGV[3] settings JSON, ARGV[4] total issuance,
-- ARGV[5] number of balances B, ARGV[6..5+2B] pairs of (address, rao), then root hyperparameter pairs
-- Reply: the genesis hash in force (the existing one if there was one).
local existing = redis.call('HGET', KEYS[1], 'hash')
if existing then return existing end
local last_balance = 5 + 2 * tonumber(ARGV[5])
for i = 6, last_balance, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], '0')
redis.call('HSET', KEYS[6], '0', ARGV[2])
redis.call('HSET', KEYS[7], ARGV[1], '0')
redis.call('HSET', KEYS[5], 'number', '0', 'hash', ARGV[1])
-- the root subnet (netuid 0) exists from genesis; it has no owner, lock or burn
redis.call('HSET', KEYS[8], '0', '')
redis.call('HSET', KEYS[9], 'netuid', '0', 'name', 'root', 'owner', '', 'owner_hotkey', '', 'task', '',
  'registered_block', '0', 'locked', '0', 'burn', '0', 'n', '0', 'regs_interval', '0', 'last_adjustment', '0',
  'pending', '0', 'last_emission', '0')
for i = last_balance + 1, #ARGV, 2 do
  redis.call('HSET', KEYS[10], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'hash', ARGV[1], 'settings', ARGV[3], 'issuance', ARGV[4])
return ARGV[1]
