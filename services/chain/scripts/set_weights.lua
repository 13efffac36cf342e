-- set_weights: a registered hotkey (the signer) sets its weights on a subnet's uids.
-- KEYS and ARGs as in _weights.lua.
local function check()
  if ARG(1) ~= '0' and commit_reveal_enabled(KEY(3)) then
    return fail('CommitRevealEnabled', 'subnet ' .. ARG(1) .. ' uses commit-reveal: commit a hash of the weights '
      .. 'with commit_weights and reveal them with reveal_weights commit_reveal_period tempos later')
  end
  local err, uid = check_weight_row()
  if err then return err end
  err = check_weights_rate(KEY(3), KEY(5), uid)
  if err then return err end
  return nil, {uid = uid}
end

local function apply(ctx)
  redis.call('HSET', KEY(7), ctx.uid, ARG(2))
  redis.call('SETRANGE', KEY(5), tonumber(ctx.uid) * 8, pack_u64(BLOCK))
  return {{'WeightsSet', 'netuid', ARG(1), 'uid', ctx.uid, 'hotkey', SIGNER, 'count', ARG(3)}}
end
