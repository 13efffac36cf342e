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

-- block numbers and uids are small integers (far below 2^53), so Lua numbers hold them exactly;
-- these read and write them in the packed little-endian per-uid vectors
local function istr(n)
  return string.format('%d', n)
end

local function pack_u64(n)
  return struct.pack('<I4I4', n % 4294967296, math.floor(n / 4294967296))
end

-- the u64 at position `index` (0-based) of a packed string key, 0 past its end
local function u64_at(key, index)
  local raw = redis.call('GETRANGE', key, index * 8, index * 8 + 7)
  if #raw < 8 then return 0 end
  local lo, hi = struct.unpack('<I4I4', raw)
  return lo + hi * 4294967296
end

-- the u16 at position `index` (0-based) of a packed string value, 0 past its end
local function u16_in(str, index)
  if #str < index * 2 + 2 then return 0 end
  return struct.unpack('<I2', str, index * 2 + 1)
end

-- the u64 at position `index` (0-based) of a packed string value, 0 past its end
local function u64_in(str, index)
  if #str < index * 8 + 8 then return 0 end
  local lo, hi = struct.unpack('<I4I4', str, index * 8 + 1)
  return lo + hi * 4294967296
end

-- HINCRBY by minus `amount` (a decimal string); Redis refuses the integer '-0', so zero is a no-op
local function hdecr(key, field, amount)
  if amount ~= '0' then redis.call('HINCRBY', key, field, '-' .. amount) end
end

-- a + b for non-negative decimal integer strings (exact past 2^53, where Lua numbers are not)
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local s = carry + (i > 0 and string.byte(a, i) - 48 or 0) + (j > 0 and string.byte(b, j) - 48 or 0)
    out[#out + 1] = string.char(48 + s % 10)
    carry = math.floor(s / 10)
    i, j = i - 1, j - 1
  end
  local sum = string.reverse(table.concat(out)):gsub('^0+', '')
  return sum == '' and '0' or sum
end

-- HMGET of any number of fields: Lua's unpack takes at most about 8,000 values, so ask in chunks
local function hmget_all(key, fields)
  local out = {}
  for first = 1, #fields, 1000 do
    local chunk = {}
    for i = first, math.min(first + 999, #fields) do chunk[#chunk + 1] = fields[i] end
    for _, value in ipairs(redis.call('HMGET', key, unpack(chunk))) do out[#out + 1] = value end
  end
  return out
end
