-- root_register: put a hotkey on the root subnet (netuid 0). When root is full, the new hotkey
-- must hold more stake than the lowest-staked member, whose uid it takes.
-- KEY(1) hotkey_owner, KEY(2) stake by hotkey, KEY(3..13) root's neuron keys (see _register.lua)
-- ARG(1) hotkey
local N = subnet_keys(3)

local function check()
  local hotkey = ARG(1)
  local owner = redis.call('HGET', KEY(1), hotkey)
  if not owner then
    return fail('UnknownHotkey', 'hotkey ' .. hotkey .. ' is not registered on any subnet')
  end
  if owner ~= SIGNER then
    return fail('HotkeyOwnedByOther', 'hotkey ' .. hotkey .. ' belongs to coldkey ' .. owner)
  end
  local have = redis.call('HGET', N.uids, hotkey)
  if have then return fail('HotkeyAlreadyRegistered', 'hotkey ' .. hotkey .. ' already holds root uid ' .. have) end
  local n = tonumber(hget0(N.info, 'n'))
  if n < tonumber(redis.call('HGET', N.hp, 'max_allowed_uids')) then return nil, {uid = n, n = n} end
  -- full: the lowest stake loses its seat (ties: the lower uid); stakes compare as strings, never floats
  local uids = {}
  for uid = 0, n - 1 do uids[#uids + 1] = istr(uid) end
  local hotkeys = hmget_all(N.hotkeys, uids)
  local low_uid, low_stake
  for i, member in ipairs(hotkeys) do
    local stake = hget0(KEY(2), member)
    if not low_stake or not ge(stake, low_stake) then
      low_uid, low_stake = i - 1, stake
    end
  end
  local mine = hget0(KEY(2), hotkey)
  if ge(low_stake, mine) then
    return fail('StakeTooLowForRoot', 'root is full: stake ' .. mine .. ' rao must exceed the lowest member\'s '
      .. low_stake .. ' rao')
  end
  return nil, {uid = low_uid, n = n}
end

local function apply(ctx)
  local replaced = place_neuron(N, ctx.uid, ARG(1), ctx.n)
  return {{'RootRegistered', 'uid', istr(ctx.uid), 'hotkey', ARG(1), 'replaced', replaced}}
end
