-- set_hyperparameter: the subnet owner changes one hyperparameter within its bounds.
-- KEY(1) subnets, KEY(2) info, KEY(3) hp
-- ARG(1) netuid, ARG(2) name, ARG(3) value (already within the name's static bounds, < 2^53),
-- ARG(4), ARG(5) the name's static bounds (for messages)
-- Values are integers below 2^53, so numeric comparison is exact; burns stay strings.
local function check()
  local netuid, name, value = ARG(1), ARG(2), ARG(3)
  local owner = redis.call('HGET', KEY(1), netuid)
  if not owner then return fail('UnknownSubnet', 'no subnet ' .. netuid) end
  if netuid == '0' then
    return fail('RootNotAllowed', "the root subnet's hyperparameters are the network's and have no owner")
  end
  if owner ~= SIGNER then
    return fail('NotSubnetOwner', 'subnet ' .. netuid .. ' is owned by ' .. owner .. ', not ' .. SIGNER)
  end
  local v = tonumber(value)
  local function hp(field) return tonumber(redis.call('HGET', KEY(3), field)) end
  local function out_of_range(low, high)
    return fail('HyperparameterOutOfRange', name .. ' ' .. value .. ' is out of range: allowed ' .. low .. '..' .. high)
  end
  if name == 'max_allowed_uids' then
    -- never below the uids already registered (no uid is dropped by a hyperparameter change)
    local n = tonumber(hget0(KEY(2), 'n'))
    if v < n then return out_of_range(istr(math.max(n, tonumber(ARG(4)))), ARG(5)) end
  elseif name == 'max_allowed_validators' and v > hp('max_allowed_uids') then
    return out_of_range(ARG(4), istr(hp('max_allowed_uids')))
  elseif name == 'min_burn' and v > hp('max_burn') then
    return out_of_range(ARG(4), istr(hp('max_burn')))
  elseif name == 'max_burn' and v < hp('min_burn') then
    return out_of_range(istr(hp('min_burn')), ARG(5))
  end
  return nil, {}
end

local function apply(ctx)
  local netuid, name, value = ARG(1), ARG(2), ARG(3)
  redis.call('HSET', KEY(3), name, value)
  local events = {{'HyperparameterSet', 'netuid', netuid, 'name', name, 'value', value}}
  -- keep the current burn inside the new [min_burn, max_burn]
  local burn = hget0(KEY(2), 'burn')
  if name == 'min_burn' and not ge(burn, value) then
    redis.call('HSET', KEY(2), 'burn', value)
  elseif name == 'max_burn' and not ge(value, burn) then
    redis.call('HSET', KEY(2), 'burn', value)
  end
  return events
end
