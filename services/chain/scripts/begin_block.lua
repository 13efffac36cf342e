-- begin_block: move the next batch of queued extrinsics into the pending block, or return the
-- pending block left by a producer that crashed, so it is finished and never rebuilt.
-- KEYS[1] lease, KEYS[2] pending (hash: number, started_ms), KEYS[3] pending_xts (list),
-- KEYS[4] pool (zset arrival -> fair-queuing tag), KEYS[5] pool_xt (hash arrival -> bytes),
-- KEYS[6] head (hash: number, hash), KEYS[7] pool stats (hash: vt, the tag of the last one taken)
-- ARGV[1] lease token, ARGV[2] max extrinsics per block, ARGV[3] max bytes per block,
-- ARGV[4] bytes allowed for each extrinsic's events, ARGV[5] now in ms
-- Reply: {number, started_ms, xt1, xt2, ...}
-- The batch is the pool's first extrinsics by tag (services/chain/pool.py) that fit both limits.
-- Every read and check comes before the first write and each extrinsic moves by itself (no unpack,
-- which fails past ~8,000 values), so the pool is never left half moved, at any size.
local denied = require_lease(KEYS[1], ARGV[1])
if denied then return denied end
local number = redis.call('HGET', KEYS[2], 'number')
if not number then
  local head = redis.call('HGET', KEYS[6], 'number')
  if not head then return redis.error_reply('NO_GENESIS the chain has no genesis block') end
  number = istr(tonumber(head) + 1)
  local budget, allowance = tonumber(ARGV[3]), tonumber(ARGV[4])
  local queued = {}
  if tonumber(ARGV[2]) > 0 then  -- (ZRANGE 0 -1 would be the whole pool)
    queued = redis.call('ZRANGE', KEYS[4], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
  end
  local taken, used, last_tag = {}, 0, nil
  for i = 1, #queued, 2 do
    local cost = redis.call('HSTRLEN', KEYS[5], queued[i]) + allowance
    if used + cost > budget then break end
    used = used + cost
    taken[#taken + 1] = queued[i]
    last_tag = queued[i + 1]
  end
  redis.call('HSET', KEYS[2], 'number', number, 'started_ms', ARGV[5])
  for _, member in ipairs(taken) do
    redis.call('RPUSH', KEYS[3], redis.call('HGET', KEYS[5], member))
    redis.call('HDEL', KEYS[5], member)
  end
  if #taken > 0 then
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, #taken - 1)
    redis.call('HSET', KEYS[7], 'vt', last_tag)
  end
end
local reply = {number, redis.call('HGET', KEYS[2], 'started_ms')}
for _, xt in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  reply[#reply + 1] = xt
end
return reply
