-- Shared closing of every call script: the check / apply driver (see _call_begin.lua).
if MODE == 'check' then
  local err, ctx = check()
  if err then return redis.error_reply(err[1] .. ' ' .. err[2]) end
  return (ctx and ctx.needed) or '0'
end

local denied = require_lease(KEYS[1], ARGV[2])
if denied then return denied end
local done = redis.call('HGET', KEYS[2], ARGV[3])
if done then return done end

local function finish(result)
  local encoded = cjson.encode(result)
  redis.call('HSET', KEYS[2], ARGV[3], encoded)
  return encoded
end
local function drop(reason)
  -- invalid when its block came: not included, nonce untouched; later queued nonces of this
  -- signer will fail too, so let the signer resubmit from its applied nonce
  redis.call('HSET', KEYS[7], SIGNER, hget0(KEYS[3], SIGNER))
  return finish({applied = false, ok = false, error = reason, events = {}})
end

local applied = hget0(KEYS[3], SIGNER)
if applied ~= ARGV[5] then return drop('StaleNonce: expected nonce ' .. applied .. ', got ' .. ARGV[5]) end
local free = hget0(KEYS[4], SIGNER)
if not ge(free, FEE) then return drop('CannotPayFee: balance ' .. free .. ' rao < fee ' .. FEE .. ' rao') end

-- from here the extrinsic is valid: its nonce is used and its fee burned even if the call fails
redis.call('HINCRBY', KEYS[3], SIGNER, 1)
local events = {}
if FEE ~= '0' then
  redis.call('HINCRBY', KEYS[4], SIGNER, '-' .. FEE)
  redis.call('DECRBY', KEYS[5], FEE)
  redis.call('INCRBY', KEYS[6], FEE)
  events[1] = {'FeeBurned', 'who', SIGNER, 'amount', FEE}
end
-- every check of the call comes before its first write: Redis does not roll a script back
local err, ctx = check()
if err then
  events[#events + 1] = {'ExtrinsicFailed', 'error', err[1]}
  return finish({applied = true, ok = false, error = err[1] .. ': ' .. err[2], events = events})
end
for _, event in ipairs(apply(ctx)) do
  events[#events + 1] = event
end
events[#events + 1] = {'ExtrinsicSuccess'}
return finish({applied = true, ok = true, error = '', events = events})
