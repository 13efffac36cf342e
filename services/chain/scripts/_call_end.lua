-- Shared closing of every call script: the check / apply driver (see _call_begin.lua).
local FREE_CALL_COOLDOWN = ARGV[9] ~= '' and tonumber(ARGV[9]) or nil
local FAILED_FIELD = CALL .. ':' .. SIGNER   -- this call kind of this hotkey in free_call_failed

-- a fee-free call that failed in its block cost its hotkey nothing, so that kind waits a while
local function checked()
  if FREE_CALL_COOLDOWN then
    local failed = redis.call('HGET', KEYS[16], FAILED_FIELD)
    if failed and BLOCK < tonumber(failed) + FREE_CALL_COOLDOWN then
      local opens = tonumber(failed) + FREE_CALL_COOLDOWN
      return fail('RateLimited', CALL .. ' by ' .. SIGNER .. ' failed in block ' .. failed
        .. ' and pays no fee: retry in ' .. istr(opens - BLOCK) .. ' blocks, at block ' .. istr(opens))
    end
  end
  return check()
end

if MODE == 'check' then
  local err, ctx = checked()
  if err then return redis.error_reply(err[1] .. ' ' .. err[2]) end
  return (ctx and ctx.needed) or '0'
end

local denied = require_lease(KEYS[1], ARGV[2])
if denied then return denied end
local done = redis.call('HGET', KEYS[2], ARGV[3])
if done then return done end

-- the pool's hold on this extrinsic ends here, applied or dropped: its reserved rao, its place in
-- the signer's share, its free-call lane (none when it was queued by replay without one)
local hold = redis.call('HGET', KEYS[9], ARGV[8])
if hold then
  local rao, size, lane = string.match(hold, '^(%d+) (%d+) (.*)$')
  if redis.call('HINCRBY', KEYS[11], SIGNER, -1) <= 0 then
    redis.call('HDEL', KEYS[10], SIGNER)
    redis.call('HDEL', KEYS[11], SIGNER)
    redis.call('HDEL', KEYS[12], SIGNER)
    redis.call('HDEL', KEYS[13], SIGNER)
  else
    hdecr(KEYS[10], SIGNER, rao)
    hdecr(KEYS[12], SIGNER, size)
  end
  hdecr(KEYS[15], 'bytes', size)
  if lane ~= '' then redis.call('HDEL', KEYS[14], lane) end
  redis.call('HDEL', KEYS[9], ARGV[8])
end

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
local err, ctx = checked()
if err then
  if FREE_CALL_COOLDOWN then redis.call('HSET', KEYS[16], FAILED_FIELD, istr(BLOCK)) end
  events[#events + 1] = {'ExtrinsicFailed', 'error', err[1]}
  return finish({applied = true, ok = false, error = err[1] .. ': ' .. err[2], events = events})
end
if FREE_CALL_COOLDOWN then redis.call('HDEL', KEYS[16], FAILED_FIELD) end
for _, event in ipairs(apply(ctx)) do
  events[#events + 1] = event
end
events[#events + 1] = {'ExtrinsicSuccess'}
return finish({applied = true, ok = true, error = '', events = events})
