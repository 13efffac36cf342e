-- set_weights: a registered hotkey (the signer) sets its weights on a subnet's uids.
-- KEY(1) subnets, KEY(2) info, KEY(3) hp, KEY(4) uids (hotkey -> uid), KEY(5) last_update (packed u64),
-- KEY(6) permit (packed bytes), KEY(7) weights (uid -> sparse row), KEY(8) stake by hotkey
-- ARG(1) netuid, ARG(2) the row (u16 uids then u16 weights, max-upscaled), ARG(3) number of uids,
-- ARG(4) the largest uid, ARG(5) the largest weight's share of the row (u16), ARG(6) the only uid
-- when there is one, else '', ARG(7) version_key
-- While no uid holds a permit (before the subnet's first epoch, or when the last one found no
-- stake) any uid with stake may set weights; the next epoch's own top-k permits decide whose count.
local function check()
  local netuid = ARG(1)
  if netuid == '0' then return fail('RootNotAllowed', 'root weights are set with set_root_weights') end
  if redis.call('HEXISTS', KEY(1), netuid) == 0 then return fail('UnknownSubnet', 'no subnet ' .. netuid) end
  local uid = redis.call('HGET', KEY(4), SIGNER)
  if not uid then return fail('NotRegistered', 'hotkey ' .. SIGNER .. ' is not registered on subnet ' .. netuid) end
  local version = redis.call('HGET', KEY(3), 'weights_version')
  if not ge(ARG(7), version) then
    return fail('WeightsVersionTooLow', 'version_key ' .. ARG(7) .. ' is below the subnet\'s weights_version '
      .. version .. ': upgrade the validator')
  end
  local n = tonumber(hget0(KEY(2), 'n'))
  if tonumber(ARG(4)) >= n then
    return fail('UidOutOfRange', 'uid ' .. ARG(4) .. ' does not exist: subnet ' .. netuid .. ' has uids 0..' .. istr(n - 1))
  end
  -- a row holding only the signer's own uid is always allowed (it only marks the uid active)
  local self_only = ARG(6) == uid
  if not self_only then
    local u = tonumber(uid)
    local permits = redis.call('GET', KEY(6)) or ''
    if string.find(permits, '\1', 1, true) then
      if string.byte(permits, u + 1) ~= 1 then
        return fail('NoValidatorPermit', 'uid ' .. uid .. ' holds no validator permit on subnet ' .. netuid
          .. ' (the top ' .. redis.call('HGET', KEY(3), 'max_allowed_validators') .. ' uids by stake hold them)')
      end
    elseif hget0(KEY(8), SIGNER) == '0' then
      return fail('NoValidatorPermit', 'uid ' .. uid .. ' has no stake: only staked uids may set weights')
    end
    local need = math.min(tonumber(redis.call('HGET', KEY(3), 'min_allowed_weights')), n)
    if tonumber(ARG(3)) < need then
      return fail('TooFewWeights', ARG(3) .. ' weights: subnet ' .. netuid .. ' needs at least ' .. istr(need))
    end
    local limit = tonumber(redis.call('HGET', KEY(3), 'max_weights_limit'))
    if tonumber(ARG(5)) > limit then
      return fail('WeightAboveLimit', 'the largest weight is ' .. ARG(5) .. '/65535 of the row, above max_weights_limit '
        .. istr(limit))
    end
  end
  local opens = u64_at(KEY(5), tonumber(uid)) + tonumber(redis.call('HGET', KEY(3), 'weights_rate_limit'))
  if BLOCK < opens then
    return fail('RateLimited', 'uid ' .. uid .. ' set weights (or registered) too recently; retry in '
      .. istr(opens - BLOCK) .. ' blocks, at block ' .. istr(opens))
  end
  return nil, {uid = uid}
end

local function apply(ctx)
  redis.call('HSET', KEY(7), ctx.uid, ARG(2))
  redis.call('SETRANGE', KEY(5), tonumber(ctx.uid) * 8, pack_u64(BLOCK))
  return {{'WeightsSet', 'netuid', ARG(1), 'uid', ctx.uid, 'hotkey', SIGNER, 'count', ARG(3)}}
end
