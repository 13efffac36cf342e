-- register_network: create a subnet owned by the signing coldkey, which locks the lock cost.
-- KEY(1) subnets (hash netuid -> owner), KEY(2) hotkey_owner, KEY(3) locked counter,
-- KEY(4 + 2(k-1)), KEY(5 + 2(k-1)): info and hp hashes of netuid k, for k = 1..max_subnets
-- ARG(1) task, ARG(2) name, ARG(3) owner hotkey, ARG(4) lock cost (rao), ARG(5) initial burn (rao),
-- ARG(6) max subnets, ARG(7..) hyperparameter (name, value) pairs: the defaults
-- The netuid is the lowest free one >= 1.
local function check()
  local hotkey, lock, max_subnets = ARG(3), ARG(4), tonumber(ARG(6))
  local netuid
  for k = 1, max_subnets do
    if redis.call('HEXISTS', KEY(1), istr(k)) == 0 then
      netuid = k
      break
    end
  end
  if not netuid then
    return fail('SubnetLimitReached', 'the network holds its maximum of ' .. ARG(6) .. ' subnets')
  end
  local owner = redis.call('HGET', KEY(2), hotkey)
  if owner and owner ~= SIGNER then
    return fail('HotkeyOwnedByOther', 'hotkey ' .. hotkey .. ' belongs to coldkey ' .. owner)
  end
  local free = hget0(KEYS[4], SIGNER)
  if not ge(free, lock) then
    return fail('InsufficientFunds', 'balance ' .. free .. ' rao < lock cost ' .. lock .. ' rao')
  end
  return nil, {needed = lock, netuid = netuid, new_owner = not owner}
end

local function apply(ctx)
  local hotkey, lock = ARG(3), ARG(4)
  local netuid = istr(ctx.netuid)
  local info, hp = KEY(4 + 2 * (ctx.netuid - 1)), KEY(5 + 2 * (ctx.netuid - 1))
  hdecr(KEYS[4], SIGNER, lock)
  redis.call('INCRBY', KEY(3), lock)
  redis.call('HSET', KEY(1), netuid, SIGNER)
  if ctx.new_owner then redis.call('HSET', KEY(2), hotkey, SIGNER) end
  redis.call('HSET', info, 'netuid', netuid, 'owner', SIGNER, 'owner_hotkey', hotkey, 'task', ARG(1),
    'name', ARG(2), 'registered_block', istr(BLOCK), 'locked', lock, 'burn', ARG(5), 'n', '0',
    'regs_interval', '0', 'last_adjustment', istr(BLOCK), 'pending', '0', 'last_emission', '0')
  for i = 7, NARGS - 1, 2 do
    redis.call('HSET', hp, ARG(i), ARG(i + 1))
  end
  return {{'NetworkRegistered', 'netuid', netuid, 'owner', SIGNER, 'hotkey', hotkey, 'task', ARG(1),
    'locked', lock}}
end
