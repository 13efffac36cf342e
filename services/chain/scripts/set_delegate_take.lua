-- set_delegate_take: make a hotkey a delegate (accepting nominators) or change its take.
-- Lowering applies at once; raising is allowed once per rate limit, so a delegate cannot raise
-- its take just before an epoch and lower it after.
-- KEY(1) hotkey_owner, KEY(2) delegate_take (hotkey -> u16), KEY(3) delegate_take_block (hotkey -> block)
-- ARG(1) hotkey, ARG(2) take (u16, within bounds), ARG(3) default take, ARG(4) raise rate limit (blocks)
local function check()
  local hotkey, take = ARG(1), tonumber(ARG(2))
  local owner = redis.call('HGET', KEY(1), hotkey)
  if not owner then return fail('UnknownHotkey', 'hotkey ' .. hotkey .. ' is not registered on any subnet') end
  if owner ~= SIGNER then return fail('HotkeyOwnedByOther', 'hotkey ' .. hotkey .. ' belongs to coldkey ' .. owner) end
  local current = tonumber(redis.call('HGET', KEY(2), hotkey) or ARG(3))
  local last = redis.call('HGET', KEY(3), hotkey)
  if take > current and last then
    local opens = tonumber(last) + tonumber(ARG(4))
    if BLOCK < opens then
      return fail('RateLimited', 'the take of ' .. hotkey .. ' was changed at block ' .. last .. '; it may rise again in '
        .. istr(opens - BLOCK) .. ' blocks, at block ' .. istr(opens))
    end
  end
  return nil, {}
end

local function apply(ctx)
  redis.call('HSET', KEY(2), ARG(1), ARG(2))
  redis.call('HSET', KEY(3), ARG(1), istr(BLOCK))
  return {{'DelegateTakeSet', 'hotkey', ARG(1), 'take', ARG(2)}}
end
