-- burned_register: register a hotkey on a subnet, burning the subnet's current burn from the signer.
-- KEY(1) subnets, KEY(2) hotkey_owner, KEY(3..13) the subnet's neuron keys (see _register.lua)
-- ARG(1) netuid, ARG(2) hotkey, ARG(3) max burn the signer accepts (rao, '0': no limit),
-- ARG(4) registrations-per-interval factor (the cap is factor x target_regs_per_interval)
local N = subnet_keys(3)

local function check()
  local netuid, hotkey, max_burn = ARG(1), ARG(2), ARG(3)
  if netuid == '0' then return fail('RootNotAllowed', 'the root subnet is joined with root_register') end
  if redis.call('HEXISTS', KEY(1), netuid) == 0 then return fail('UnknownSubnet', 'no subnet ' .. netuid) end
  local owner = redis.call('HGET', KEY(2), hotkey)
  if owner and owner ~= SIGNER then
    return fail('HotkeyOwnedByOther', 'hotkey ' .. hotkey .. ' belongs to coldkey ' .. owner)
  end
  local have = redis.call('HGET', N.uids, hotkey)
  if have then
    return fail('HotkeyAlreadyRegistered', 'hotkey ' .. hotkey .. ' already holds uid ' .. have .. ' on subnet ' .. netuid)
  end
  local regs = tonumber(hget0(N.info, 'regs_interval'))
  local cap = tonumber(ARG(4)) * tonumber(redis.call('HGET', N.hp, 'target_regs_per_interval'))
  if regs >= cap then
    -- the burn adjustment after the extrinsics of block last_adjustment + interval opens the next interval
    local opens = tonumber(hget0(N.info, 'last_adjustment')) + tonumber(redis.call('HGET', N.hp, 'adjustment_interval')) + 1
    return fail('TooManyRegistrations', 'subnet ' .. netuid .. ' had ' .. istr(regs) .. ' registrations this interval (limit '
      .. istr(cap) .. '); retry in ' .. istr(math.max(1, opens - BLOCK)) .. ' blocks, at block ' .. istr(opens))
  end
  local burn = hget0(N.info, 'burn')
  if max_burn ~= '0' and not ge(max_burn, burn) then
    return fail('BurnAboveLimit', 'the burn is ' .. burn .. ' rao, above your max_burn of ' .. max_burn .. ' rao')
  end
  local free = hget0(KEYS[4], SIGNER)
  if not ge(free, burn) then
    return fail('InsufficientFunds', 'balance ' .. free .. ' rao < registration burn ' .. burn .. ' rao')
  end
  local n = tonumber(hget0(N.info, 'n'))
  local uid = n
  if n >= tonumber(redis.call('HGET', N.hp, 'max_allowed_uids')) then uid = uid_to_prune(N, n) end
  return nil, {needed = burn, burn = burn, uid = uid, n = n, new_owner = not owner}
end

local function apply(ctx)
  local netuid, hotkey = ARG(1), ARG(2)
  hdecr(KEYS[4], SIGNER, ctx.burn)
  redis.call('DECRBY', KEYS[5], ctx.burn)
  redis.call('INCRBY', KEYS[6], ctx.burn)
  if ctx.new_owner then redis.call('HSET', KEY(2), hotkey, SIGNER) end
  local replaced = place_neuron(N, ctx.uid, hotkey, ctx.n)
  redis.call('HINCRBY', N.info, 'regs_interval', 1)
  return {{'NeuronRegistered', 'netuid', netuid, 'uid', istr(ctx.uid), 'hotkey', hotkey, 'coldkey', SIGNER,
    'burn', ctx.burn, 'replaced', replaced}}
end
