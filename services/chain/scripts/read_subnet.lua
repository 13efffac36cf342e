-- read_subnet: one consistent read of a subnet for its epoch or its metagraph (writes nothing).
-- KEYS[1] info, KEYS[2] hp, KEYS[3] hotkeys, KEYS[4] reg_block, KEYS[5] last_update, KEYS[6] pruning,
-- KEYS[7] permit, KEYS[8] weights, KEYS[9] bonds, KEYS[10] axons, KEYS[11] out, KEYS[12] stake by hotkey,
-- KEYS[13] hotkey_owner, KEYS[14] delegate_take, KEYS[15] commits
-- ARGV[1] '1' to include weights, ARGV[2] '1' to include bonds, ARGV[3] '1' to include axons and out
-- Reply: {info pairs, hp pairs, hotkeys by uid, stakes by uid, owners by uid, takes by uid ('' = not a
--   delegate), reg_block, last_update, pruning, permit, weight pairs, bond pairs, axon pairs, out pairs,
--   commit pairs (with ARGV[3])};
--   the four per-uid lists come space-joined as one string each (4 strings parse far faster than 16k)
local info = redis.call('HGETALL', KEYS[1])
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local hotkeys, stakes, owners, takes = {}, {}, {}, {}
if n > 0 then
  local uids = {}
  for uid = 0, n - 1 do uids[#uids + 1] = istr(uid) end
  hotkeys = hmget_all(KEYS[3], uids)
  for i = 1, n do hotkeys[i] = hotkeys[i] or '' end
  stakes = hmget_all(KEYS[12], hotkeys)
  owners = hmget_all(KEYS[13], hotkeys)
  takes = hmget_all(KEYS[14], hotkeys)
  for i = 1, n do
    hotkeys[i] = hotkeys[i] or ''
    stakes[i] = stakes[i] or '0'
    owners[i] = owners[i] or ''
    takes[i] = takes[i] or ''
  end
end
local empty = {}
return {
  info, redis.call('HGETALL', KEYS[2]), table.concat(hotkeys, ' '), table.concat(stakes, ' '),
  table.concat(owners, ' '), table.concat(takes, ' '),
  redis.call('GET', KEYS[4]) or '', redis.call('GET', KEYS[5]) or '', redis.call('GET', KEYS[6]) or '',
  redis.call('GET', KEYS[7]) or '',
  ARGV[1] == '1' and redis.call('HGETALL', KEYS[8]) or empty,
  ARGV[2] == '1' and redis.call('HGETALL', KEYS[9]) or empty,
  ARGV[3] == '1' and redis.call('HGETALL', KEYS[10]) or empty,
  ARGV[3] == '1' and redis.call('HGETALL', KEYS[11]) or empty,
  ARGV[3] == '1' and redis.call('HGETALL', KEYS[15]) or empty,
}
