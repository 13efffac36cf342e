-- transfer: apply one signed transfer of the pending block, exactly once.
-- KEYS[1] lease, KEYS[2] pending_results (hash index -> result JSON), KEYS[3] nonces,
-- KEYS[4] free, KEYS[5] issuance, KEYS[6] burned, KEYS[7] pool_next
-- ARGV[1] lease token, ARGV[2] index in block, ARGV[3] signer, ARGV[4] nonce, ARGV[5] fee,
-- ARGV[6] dest, ARGV[7] amount (rao, 1..2^53-1, checked by the caller)
-- Reply: the result JSON {"applied":bool,"ok":bool,"error":str,"events":[[name,k,v,...],...]}.
-- The result is journaled with the state change, so a producer that crashes and resumes the block
-- finds it and does not apply the extrinsic twice.
local denied = require_lease(KEYS[1], ARGV[1])
if denied then return denied end
local done = redis.call('HGET', KEYS[2], ARGV[2])
if done then return done end

local signer, fee, dest, amount = ARGV[3], ARGV[5], ARGV[6], ARGV[7]
local function finish(result)
  local encoded = cjson.encode(result)
  redis.call('HSET', KEYS[2], ARGV[2], encoded)
  return encoded
end
local function drop(reason)
  -- invalid when its block came: not included, nonce untouched; later queued nonces of this
  -- signer will fail too, so let the signer resubmit from its applied nonce
  redis.call('HSET', KEYS[7], signer, hget0(KEYS[3], signer))
  return finish({applied = false, ok = false, error = reason, events = {}})
end

local applied = hget0(KEYS[3], signer)
if applied ~= ARGV[4] then return drop('StaleNonce: expected nonce ' .. applied .. ', got ' .. ARGV[4]) end
local free = hget0(KEYS[4], signer)
if not ge(free, fee) then return drop('CannotPayFee: balance ' .. free .. ' rao < fee ' .. fee .. ' rao') end

-- from here the extrinsic is valid: its nonce is used and its fee burned even if the call fails
redis.call('HINCRBY', KEYS[3], signer, 1)
hdecr(KEYS[4], signer, fee)
redis.call('DECRBY', KEYS[5], fee)
redis.call('INCRBY', KEYS[6], fee)
local events = {{'FeeBurned', 'who', signer, 'amount', fee}}
local left = redis.call('HGET', KEYS[4], signer)
if not ge(left, amount) then
  events[#events + 1] = {'ExtrinsicFailed', 'error', 'InsufficientFunds'}
  return finish({applied = true, ok = false,
    error = 'InsufficientFunds: balance ' .. left .. ' rao < amount ' .. amount .. ' rao', events = events})
end
hdecr(KEYS[4], signer, amount)
redis.call('HINCRBY', KEYS[4], dest, amount)
events[#events + 1] = {'Transfer', 'from', signer, 'to', dest, 'amount', amount}
events[#events + 1] = {'ExtrinsicSuccess'}
return finish({applied = true, ok = true, error = '', events = events})
