-- Shared by burned_register and root_register: placing a hotkey on a uid of a subnet.
-- subnet_keys(first) reads 11 consecutive call keys, in SubnetKeys.neuron_keys() order.
local function subnet_keys(first)
  return {info = KEY(first), hp = KEY(first + 1), hotkeys = KEY(first + 2), uids = KEY(first + 3),
    reg_block = KEY(first + 4), last_update = KEY(first + 5), pruning = KEY(first + 6), permit = KEY(first + 7),
    weights = KEY(first + 8), bonds = KEY(first + 9), axons = KEY(first + 10)}
end

-- Of two candidates, the one to prune first: lower pruning score, then earlier registration.
-- Candidates come in ascending uid order and only a strictly better one wins, so ties keep the lower uid.
local function prune_first(a, b)
  if not a then return b end
  if b.score < a.score or (b.score == a.score and b.reg < a.reg) then return b end
  return a
end

-- The uid a new registration replaces on a full subnet: the lowest pruning score among uids
-- outside their immunity period (BLOCK - registered < immunity_period); if every uid is immune,
-- the lowest among all (Bittensor's get_neuron_to_prune).
local function uid_to_prune(N, n)
  local immunity = tonumber(redis.call('HGET', N.hp, 'immunity_period'))
  local scores = redis.call('GET', N.pruning) or ''
  local regs = redis.call('GET', N.reg_block) or ''
  local best, best_immune
  for uid = 0, n - 1 do
    local cand = {uid = uid, score = u16_in(scores, uid), reg = u64_in(regs, uid)}
    if BLOCK - cand.reg < immunity then
      best_immune = prune_first(best_immune, cand)
    else
      best = prune_first(best, cand)
    end
  end
  return (best or best_immune).uid
end

-- Put hotkey on uid (n: the subnet's uid count before). A replaced hotkey loses the uid; the
-- uid's weights, bonds, axon and permit go, and its last update and registration become BLOCK,
-- so weights set before now on this uid no longer count (yuma's outdated mask).
-- Returns the replaced hotkey, or '' for a new uid.
local function place_neuron(N, uid, hotkey, n)
  local u = istr(uid)
  local old = redis.call('HGET', N.hotkeys, u)
  if old then redis.call('HDEL', N.uids, old) end
  redis.call('HSET', N.hotkeys, u, hotkey)
  redis.call('HSET', N.uids, hotkey, u)
  redis.call('SETRANGE', N.reg_block, uid * 8, pack_u64(BLOCK))
  redis.call('SETRANGE', N.last_update, uid * 8, pack_u64(BLOCK))
  redis.call('SETRANGE', N.pruning, uid * 2, '\0\0')
  redis.call('SETRANGE', N.permit, uid, '\0')
  redis.call('HDEL', N.weights, u)
  redis.call('HDEL', N.bonds, u)
  redis.call('HDEL', N.axons, u)
  if uid >= n then redis.call('HSET', N.info, 'n', istr(uid + 1)) end
  return old or ''
end
