-- remove_stake: move rao of the signing coldkey's stake on a hotkey back to its free balance.
-- KEY(1) stake by hotkey, KEY(2) the hotkey's nominators, KEY(3) the signer's stakes, KEY(4) total_stake
-- ARG(1) hotkey, ARG(2) amount (rao, 1..2^53-1)
local function check()
  local hotkey, amount = ARG(1), ARG(2)
  local have = hget0(KEY(2), SIGNER)
  if not ge(have, amount) then
    return fail('InsufficientStake', SIGNER .. ' has ' .. have .. ' rao staked on ' .. hotkey .. ', less than '
      .. amount .. ' rao')
  end
  return nil, {all = have == amount}
end

local function apply(ctx)
  local hotkey, amount = ARG(1), ARG(2)
  if ctx.all then
    redis.call('HDEL', KEY(2), SIGNER)
    redis.call('HDEL', KEY(3), hotkey)
  else
    hdecr(KEY(2), SIGNER, amount)
    hdecr(KEY(3), hotkey, amount)
  end
  hdecr(KEY(1), hotkey, amount)
  if redis.call('HGET', KEY(1), hotkey) == '0' then redis.call('HDEL', KEY(1), hotkey) end
  redis.call('DECRBY', KEY(4), amount)
  redis.call('HINCRBY', KEYS[4], SIGNER, amount)
  return {{'StakeRemoved', 'coldkey', SIGNER, 'hotkey', hotkey, 'amount', amount}}
end
