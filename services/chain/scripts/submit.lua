-- submit: check an extrinsic against current state and the pool's limits, and queue it for a block.
-- KEYS[1] pool (zset arrival -> tag), KEYS[2] pool_xt (hash arrival -> bytes), KEYS[3] pool_next
-- (hash signer -> next nonce), KEYS[4] nonces (hash signer -> applied count), KEYS[5] free,
-- KEYS[6] status (hash extrinsic hash -> status), KEYS[7..13] the pool's accounting: hold, reserved,
-- count, bytes, tag, lanes, stats (see ledger/keys.py)
-- ARGV[1] signer, ARGV[2] nonce, ARGV[3] extrinsic hash (hex), ARGV[4] extrinsic bytes,
-- ARGV[5] rao the signer needs for it (fee + what the call takes), ARGV[6] pool capacity,
-- ARGV[7] pool bytes, ARGV[8] extrinsics per signer, ARGV[9] free-call lane ('' if none),
-- ARGV[10] '1' for fair queuing, '0' for arrival order
-- Reply: the signer's next nonce after this one (a string).
-- The rules are services/chain/pool.py's. Nothing is written before the last check, so a refusal
-- changes nothing.
local signer, nonce, hash, raw, upfront = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local capacity, max_bytes, per_signer = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local lane = ARGV[9]
local HOLD, RESERVED, COUNT, BYTES, TAG, LANES, STATS = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local size = #raw
local known = redis.call('HGET', KEYS[6], hash)
if known == 'q' then
  -- the same extrinsic, still waiting: acknowledge it again, so that a client (or redis-py after a
  -- dropped connection) that repeats a submit whose reply it lost learns it is queued, once
  return redis.call('HGET', KEYS[3], signer)
end
if known then
  return redis.error_reply('DUPLICATE ' .. hash)
end
local n = redis.call('HLEN', HOLD)   -- one hold per extrinsic queued or in the block being built
local bytes = tonumber(redis.call('HGET', STATS, 'bytes') or '0')
if n >= capacity then return redis.error_reply('POOL_FULL ' .. istr(n)) end
if bytes + size > max_bytes then return redis.error_reply('POOL_FULL_BYTES ' .. istr(bytes)) end
-- nonces are counts of extrinsics, far below 2^53, so numeric comparison is exact
local applied = tonumber(hget0(KEYS[4], signer))
local expected = applied
local queued = redis.call('HGET', KEYS[3], signer)
if queued and tonumber(queued) > expected then expected = tonumber(queued) end
if nonce < applied then return redis.error_reply('STALE_NONCE ' .. istr(applied)) end
if nonce < expected then return redis.error_reply('NONCE_IN_POOL ' .. istr(expected)) end
if nonce > expected then return redis.error_reply('FUTURE_NONCE ' .. istr(expected)) end
local mine = tonumber(hget0(COUNT, signer))
if mine >= per_signer then return redis.error_reply('SIGNER_LIMIT ' .. istr(mine)) end
if mine > 0 then
  -- past half full, a signer holding at least the average share waits for a block
  local signers = redis.call('HLEN', COUNT)
  local my_bytes = tonumber(hget0(BYTES, signer))
  if (n * 2 >= capacity and mine * signers >= n) or (bytes * 2 >= max_bytes and my_bytes * signers >= bytes) then
    return redis.error_reply('POOL_BUSY ' .. istr(mine) .. ' ' .. istr(n) .. ' ' .. istr(signers))
  end
end
local free, reserved = hget0(KEYS[5], signer), hget0(RESERVED, signer)
if not ge(free, add(reserved, upfront)) then
  return redis.error_reply('INSUFFICIENT_FUNDS ' .. free .. ' ' .. reserved)
end
if lane ~= '' and redis.call('HEXISTS', LANES, lane) == 1 then
  return redis.error_reply('LANE_BUSY ' .. redis.call('HGET', LANES, lane))
end

local seq = redis.call('HINCRBY', STATS, 'seq', 1)
local member = string.format('%015d', seq)
local tag = seq
if ARGV[10] == '1' then
  -- start-time fair queuing: one past the later of the pool's virtual time and this signer's last tag
  tag = math.max(tonumber(redis.call('HGET', STATS, 'vt') or '0'), tonumber(hget0(TAG, signer))) + 1
  redis.call('HSET', TAG, signer, istr(tag))
end
redis.call('ZADD', KEYS[1], istr(tag), member)
redis.call('HSET', KEYS[2], member, raw)
redis.call('HSET', HOLD, hash, upfront .. ' ' .. istr(size) .. ' ' .. lane)
redis.call('HINCRBY', RESERVED, signer, upfront)
redis.call('HINCRBY', COUNT, signer, 1)
redis.call('HINCRBY', BYTES, signer, size)
redis.call('HINCRBY', STATS, 'bytes', size)
if lane ~= '' then redis.call('HSET', LANES, lane, hash) end
redis.call('HSET', KEYS[3], signer, istr(nonce + 1))
redis.call('HSET', KEYS[6], hash, 'q')
return istr(nonce + 1)
