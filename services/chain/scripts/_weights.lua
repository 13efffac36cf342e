-- Shared by set_weights and reveal_weights: what a weights row must satisfy against the subnet's
-- state, the signer's rate limit aside. The call's KEYS and ARGs start the same way:
-- KEY(1) subnets, KEY(2) info, KEY(3) hp, KEY(4) uids (hotkey -> uid), KEY(5) last_update (packed u64),
-- KEY(6) permit (packed bytes), KEY(7) weights (uid -> sparse row), KEY(8) stake by hotkey
-- ARG(1) netuid, ARG(2) the row (u16 uids then u16 weights, max-upscaled), ARG(3) number of uids,
-- ARG(4) the largest uid, ARG(5) the largest weight's share of the row (u16), ARG(6) the only uid
-- when there is one, else '', ARG(7) version_key
-- While no uid holds a permit (before the subnet's first epoch, or when the last one found no
-- stake) any uid with stake may set weights; the next epoch's own top-k permits decide whose count.

-- commit-reveal is on for the subnet (a subnet created before the setting existed has it off)
local function commit_reveal_enabled(hp_key)
  return redis.call('HGET', hp_key, 'commit_reveal_weights_enabled') == '1'
end

-- (error, uid): the signer's uid, or why this row may not become its weights
local function check_weight_row()
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
  if ARG(6) == uid then return nil, uid end
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
  return nil, uid
end

-- error if the uid set (or committed) weights, or registered, within the subnet's weights_rate_limit
local function check_weights_rate(hp_key, last_update_key, uid)
  local opens = u64_at(last_update_key, tonumber(uid)) + tonumber(redis.call('HGET', hp_key, 'weights_rate_limit'))
  if BLOCK < opens then
    return fail('RateLimited', 'uid ' .. uid .. ' set weights (or registered) too recently; retry in '
      .. istr(opens - BLOCK) .. ' blocks, at block ' .. istr(opens))
  end
  return nil
end

-- The first and last block a reveal of a commit made in `commit_block` may land in: the whole
-- epoch-index commit_reveal_period tempos after the commit's (subtensor's get_epoch_index; the same
-- rule as services/chain/subnets.py reveal_window)
local function reveal_window(commit_block, netuid, hp_key)
  local tempo = tonumber(redis.call('HGET', hp_key, 'tempo'))
  local period = tonumber(redis.call('HGET', hp_key, 'commit_reveal_period') or '1')
  local index = math.floor((commit_block + netuid + 1) / (tempo + 1))
  local first = (index + period) * (tempo + 1) - netuid - 1
  return first, first + tempo
end

-- The signer's commits on the subnet, oldest first, as {hash hex, commit block} pairs
local function read_commits(commits_key)
  local raw = redis.call('HGET', commits_key, SIGNER)
  if not raw then return {} end
  return cjson.decode(raw)
end

local function write_commits(commits_key, commits)
  if #commits == 0 then
    redis.call('HDEL', commits_key, SIGNER)
  else
    redis.call('HSET', commits_key, SIGNER, cjson.encode(commits))
  end
end
