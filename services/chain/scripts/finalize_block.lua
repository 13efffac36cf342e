-- finalize_block: seal the pending block: store it, move the head, index its extrinsics,
-- publish it on the block stream, and clear the pending state, all at once.
-- KEYS[1] lease, KEYS[2] pending, KEYS[3] pending_xts, KEYS[4] pending_results, KEYS[5] head,
-- KEYS[6] block store (hash number -> Block bytes), KEYS[7] block index (hash hex hash -> number),
-- KEYS[8] status (hash extrinsic hash -> status), KEYS[9] block stream
-- ARGV[1] lease token, ARGV[2] number, ARGV[3] block hash (hex), ARGV[4] Block bytes,
-- ARGV[5] events JSON (for stream readers), ARGV[6] stream max length,
-- ARGV[7..] pairs of (extrinsic hash hex, status) for every extrinsic of the pending block
-- Reply: the number.
local denied = require_lease(KEYS[1], ARGV[1])
if denied then return denied end
if redis.call('HGET', KEYS[2], 'number') ~= ARGV[2] then
  return redis.error_reply('NO_PENDING no pending block ' .. ARGV[2])
end
redis.call('HSET', KEYS[6], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[7], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[5], 'number', ARGV[2], 'hash', ARGV[3])
for i = 7, #ARGV, 2 do
  redis.call('HSET', KEYS[8], ARGV[i], ARGV[i + 1])
end
-- stream ids follow block numbers, so a reader resumes from any block with XREAD <n>-0
redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[6], ARGV[2] .. '-1',
  'number', ARGV[2], 'hash', ARGV[3], 'events', ARGV[5])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return ARGV[2]
