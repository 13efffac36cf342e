-- Shared helpers, prepended to every script by ledger.py.
-- Amounts stay decimal strings: Lua numbers are doubles, exact only to 2^53, and balances can pass that.
-- Redis integers (HINCRBY/INCRBY) are exact signed 64-bit, so all arithmetic happens in Redis.

-- a >= b for non-negative decimal integer strings without leading zeros
local function ge(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end

local function hget0(key, field)
  return redis.call('HGET', key, field) or '0'
end

-- fencing: only the holder of the producer lease may write blocks, so a paused old leader
-- that wakes after losing its lease cannot apply anything
local function require_lease(lease_key, token)
  if redis.call('GET', lease_key) ~= token then
    return redis.error_reply('NOT_LEADER the block-production lease is held by another process')
  end
  return nil
end
