-- add_stake: move rao from the signing coldkey's free balance to its stake on a hotkey.
-- KEY(1) hotkey_owner, KEY(2) delegate_take, KEY(3) stake by hotkey, KEY(4) the hotkey's nominators
-- (coldkey -> rao), KEY(5) the signer's stakes (hotkey -> rao), KEY(6) total_stake counter
-- ARG(1) hotkey, ARG(2) amount (rao, 1..2^53-1)
local function check()
  local hotkey, amount = ARG(1), ARG(2)
  local owner = redis.call('HGET', KEY(1), hotkey)
  if not owner then return fail('UnknownHotkey', 'hotkey ' .. hotkey .. ' is not registered on any subnet') end
  if owner ~= SIGNER and redis.call('HEXISTS', KEY(2), hotkey) == 0 then
    return fail('NotADelegate', 'hotkey ' .. hotkey .. ' belongs to ' .. owner .. ' and is not a delegate')
  end
  local free = hget0(KEYS[4], SIGNER)
  if not ge(free, amount) then
    return fail('InsufficientFunds', 'balance ' .. free .. ' rao < stake ' .. amount .. ' rao')
  end
  return nil, {needed = amount}
end

local function apply(ctx)
  local hotkey, amount = ARG(1), ARG(2)
  hdecr(KEYS[4], SIGNER, amount)
  redis.call('HINCRBY', KEY(3), hotkey, amount)
  redis.call('HINCRBY', KEY(4), SIGNER, amount)
  redis.call('HINCRBY', KEY(5), hotkey, amount)
  redis.call('INCRBY', KEY(6), amount)
  return {{'StakeAdded', 'coldkey', SIGNER, 'hotkey', hotkey, 'amount', amount}}
end
