-- submit: check an extrinsic against current state and queue it for the next block.
-- KEYS[1] pool (list of extrinsic bytes), KEYS[2] pool_next (hash signer -> next nonce),
-- KEYS[3] nonces (hash signer -> applied count), KEYS[4] free (hash address -> rao),
-- KEYS[5] status (hash extrinsic hash -> status)
-- ARGV[1] signer, ARGV[2] nonce, ARGV[3] extrinsic hash (hex), ARGV[4] extrinsic bytes,
-- ARGV[5] rao the signer needs now (fee + amount), ARGV[6] pool capacity
-- Reply: the signer's next nonce after this one (a string).
-- Nothing is written before the last check, so a refusal changes nothing.
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[6]) then
  return redis.error_reply('POOL_FULL ' .. ARGV[6])
end
if redis.call('HEXISTS', KEYS[5], ARGV[3]) == 1 then
  return redis.error_reply('DUPLICATE ' .. ARGV[3])
end
-- nonces are counts of extrinsics, far below 2^53, so numeric comparison is exact
local applied = tonumber(hget0(KEYS[3], ARGV[1]))
local expected = applied
local queued = redis.call('HGET', KEYS[2], ARGV[1])
if queued and tonumber(queued) > expected then expected = tonumber(queued) end
local nonce = tonumber(ARGV[2])
if nonce < applied then
  return redis.error_reply('STALE_NONCE ' .. string.format('%d', applied))
end
if nonce < expected then
  return redis.error_reply('NONCE_IN_POOL ' .. string.format('%d', expected))
end
if nonce > expected then
  return redis.error_reply('FUTURE_NONCE ' .. string.format('%d', expected))
end
local free = hget0(KEYS[4], ARGV[1])
if not ge(free, ARGV[5]) then
  return redis.error_reply('INSUFFICIENT_FUNDS ' .. free)
end
redis.call('RPUSH', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', nonce + 1))
redis.call('HSET', KEYS[5], ARGV[3], 'q')
return string.format('%d', nonce + 1)
