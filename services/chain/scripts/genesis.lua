-- genesis: write the genesis state once. A chain that already has one keeps it.
-- KEYS[1] genesis (hash), KEYS[2] free, KEYS[3] issuance, KEYS[4] burned, KEYS[5] head,
-- KEYS[6] block store, KEYS[7] block index
-- ARGV[1] genesis hash (hex), ARGV[2] Block 0 bytes, ARGV[3] settings JSON, ARGV[4] total issuance,
-- ARGV[5..] pairs of (address, rao)
-- Reply: the genesis hash in force (the existing one if there was one).
local existing = redis.call('HGET', KEYS[1], 'hash')
if existing then return existing end
for i = 5, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], '0')
redis.call('HSET', KEYS[6], '0', ARGV[2])
redis.call('HSET', KEYS[7], ARGV[1], '0')
redis.call('HSET', KEYS[5], 'number', '0', 'hash', ARGV[1])
redis.call('HSET', KEYS[1], 'hash', ARGV[1], 'settings', ARGV[3])
return ARGV[1]
