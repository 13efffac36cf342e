-- commit_weights: a registered hotkey commits the hash of weights it will reveal in the epoch-index
-- commit_reveal_period tempos later (commit-reveal: nobody sees fresh weights, so nobody copies them).
-- KEYS as in _weights.lua, then KEY(9) commits (hotkey -> JSON list of {hash, block}, oldest first)
-- ARG(1) netuid, ARG(2) the commit hash (64 hex digits), ARG(3) the most unrevealed commits a hotkey may hold
local function check()
  local netuid = ARG(1)
  if netuid == '0' then return fail('RootNotAllowed', 'root weights are set with set_root_weights') end
  if redis.call('HEXISTS', KEY(1), netuid) == 0 then return fail('UnknownSubnet', 'no subnet ' .. netuid) end
  if not commit_reveal_enabled(KEY(3)) then
    return fail('CommitRevealDisabled', 'subnet ' .. netuid .. ' does not use commit-reveal: set weights with set_weights')
  end
  local uid = redis.call('HGET', KEY(4), SIGNER)
  if not uid then return fail('NotRegistered', 'hotkey ' .. SIGNER .. ' is not registered on subnet ' .. netuid) end
  local err = check_weights_rate(KEY(3), KEY(5), uid)
  if err then return err end
  -- commits whose reveal window has passed are dropped: they never count again
  local live = {}
  for _, c in ipairs(read_commits(KEY(9))) do
    local _, last = reveal_window(c[2], tonumber(netuid), KEY(3))
    if BLOCK <= last then live[#live + 1] = c end
  end
  if #live >= tonumber(ARG(3)) then
    return fail('TooManyUnrevealedCommits', 'hotkey ' .. SIGNER .. ' has ' .. istr(#live) .. ' unrevealed commits on subnet '
      .. netuid .. ', the most allowed: reveal or let them expire first')
  end
  return nil, {uid = uid, live = live}
end

local function apply(ctx)
  local live = ctx.live
  live[#live + 1] = {ARG(2), BLOCK}
  write_commits(KEY(9), live)
  redis.call('SETRANGE', KEY(5), tonumber(ctx.uid) * 8, pack_u64(BLOCK))
  return {{'WeightsCommitted', 'netuid', ARG(1), 'uid', ctx.uid, 'hotkey', SIGNER, 'hash', ARG(2)}}
end
