-- set_root_weights: a root member (the signing hotkey) weights subnets; root consensus over these
-- rows splits each block's emission across subnets.
-- KEY(1) subnets, KEY(2) root hp, KEY(3) root uids (hotkey -> uid), KEY(4) root last_update (packed u64),
-- KEY(5) root weights (uid -> sparse row over netuids)
-- ARG(1) the row (u16 netuids then u16 weights, max-upscaled), ARG(2) version_key, ARG(3..) the netuids
local function check()
  local uid = redis.call('HGET', KEY(3), SIGNER)
  if not uid then return fail('NotRegistered', 'hotkey ' .. SIGNER .. ' is not a root member: root_register it first') end
  local version = redis.call('HGET', KEY(2), 'weights_version')
  if not ge(ARG(2), version) then
    return fail('WeightsVersionTooLow', 'version_key ' .. ARG(2) .. ' is below root\'s weights_version ' .. version)
  end
  for i = 3, NARGS do
    if ARG(i) == '0' or redis.call('HEXISTS', KEY(1), ARG(i)) == 0 then
      return fail('UnknownSubnet', 'no subnet ' .. ARG(i) .. ' to weight (root weights name non-root subnets)')
    end
  end
  local opens = u64_at(KEY(4), tonumber(uid)) + tonumber(redis.call('HGET', KEY(2), 'weights_rate_limit'))
  if BLOCK < opens then
    return fail('RateLimited', 'root uid ' .. uid .. ' set weights (or registered) too recently; retry in '
      .. istr(opens - BLOCK) .. ' blocks, at block ' .. istr(opens))
  end
  return nil, {uid = uid}
end

local function apply(ctx)
  redis.call('HSET', KEY(5), ctx.uid, ARG(1))
  redis.call('SETRANGE', KEY(4), tonumber(ctx.uid) * 8, pack_u64(BLOCK))
  return {{'RootWeightsSet', 'uid', ctx.uid, 'hotkey', SIGNER, 'count', istr(NARGS - 2)}}
end
