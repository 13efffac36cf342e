-- reveal_weights: the weights and salt behind one of the signer's commits become its weights, if
-- they hash to it (ARG(8), computed by the ledger: Lua has no blake2b) and the block lies in that
-- commit's reveal window. The commit and every older one are consumed. The weights count from the
-- commit: last_update keeps the commit's block, and no rate limit applies (the commit had one).
-- KEYS as in commit_weights.lua; ARG(1..7) as in _weights.lua, ARG(8) the reveal's hash (hex)
local function check()
  local netuid = ARG(1)
  if netuid ~= '0' and redis.call('HEXISTS', KEY(1), netuid) == 1 and not commit_reveal_enabled(KEY(3)) then
    return fail('CommitRevealDisabled', 'subnet ' .. netuid .. ' does not use commit-reveal: set weights with set_weights')
  end
  local err, uid = check_weight_row()
  if err then return err end
  local commits = read_commits(KEY(9))
  if #commits == 0 then
    return fail('NoWeightsCommitFound', 'hotkey ' .. SIGNER .. ' has no weights commit on subnet ' .. netuid)
  end
  for i, c in ipairs(commits) do
    if c[1] == ARG(8) then
      local first, last = reveal_window(c[2], tonumber(netuid), KEY(3))
      if BLOCK < first then
        return fail('RevealTooEarly', 'the commit of block ' .. istr(c[2]) .. ' may be revealed from block '
          .. istr(first) .. ' (in ' .. istr(first - BLOCK) .. ' blocks) to block ' .. istr(last))
      end
      if BLOCK > last then
        return fail('ExpiredWeightCommit', 'the commit of block ' .. istr(c[2]) .. ' had to be revealed by block '
          .. istr(last) .. ': it expired; commit again')
      end
      local rest = {}
      for j = i + 1, #commits do rest[#rest + 1] = commits[j] end
      return nil, {uid = uid, rest = rest}
    end
  end
  return fail('InvalidRevealCommitHashNotMatch', 'these uids, weights, salt and version_key match none of the '
    .. istr(#commits) .. ' commits of hotkey ' .. SIGNER .. ' on subnet ' .. netuid)
end

local function apply(ctx)
  write_commits(KEY(9), ctx.rest)
  redis.call('HSET', KEY(7), ctx.uid, ARG(2))
  return {{'WeightsRevealed', 'netuid', ARG(1), 'uid', ctx.uid, 'hotkey', SIGNER, 'count', ARG(3), 'hash', ARG(8)}}
end
