-- begin_block: move the next batch of queued extrinsics into the pending block, or return the
-- pending block left by a producer that crashed, so it is finished and never rebuilt.
-- KEYS[1] lease, KEYS[2] pending (hash: number, started_ms), KEYS[3] pending_xts (list),
-- KEYS[4] pool (list), KEYS[5] head (hash: number, hash)
-- ARGV[1] lease token, ARGV[2] max extrinsics per block, ARGV[3] now in ms
-- Reply: {number, started_ms, xt1, xt2, ...}
local denied = require_lease(KEYS[1], ARGV[1])
if denied then return denied end
local number = redis.call('HGET', KEYS[2], 'number')
if not number then
  local head = redis.call('HGET', KEYS[5], 'number')
  if not head then return redis.error_reply('NO_GENESIS the chain has no genesis block') end
  number = string.format('%d', tonumber(head) + 1)
  local batch = redis.call('LRANGE', KEYS[4], 0, tonumber(ARGV[2]) - 1)
  if #batch > 0 then
    redis.call('LTRIM', KEYS[4], #batch, -1)
    redis.call('RPUSH', KEYS[3], unpack(batch))
  end
  redis.call('HSET', KEYS[2], 'number', number, 'started_ms', ARGV[3])
end
local reply = {number, redis.call('HGET', KEYS[2], 'started_ms')}
for _, xt in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  reply[#reply + 1] = xt
end
return reply
