-- serve_axon: a registered hotkey (the signer) publishes its endpoint on a subnet.
-- KEY(1) subnets, KEY(2) the subnet's uids (hotkey -> uid), KEY(3) its axons (uid -> JSON), KEY(4) its hp
-- ARG(1) netuid, ARG(2) host, ARG(3) port, ARG(4) protocol, ARG(5) version
local function check()
  local netuid = ARG(1)
  if redis.call('HEXISTS', KEY(1), netuid) == 0 then return fail('UnknownSubnet', 'no subnet ' .. netuid) end
  local uid = redis.call('HGET', KEY(2), SIGNER)
  if not uid then return fail('NotRegistered', 'hotkey ' .. SIGNER .. ' is not registered on subnet ' .. netuid) end
  local prev = redis.call('HGET', KEY(3), uid)
  if prev then
    local opens = tonumber(cjson.decode(prev).block) + tonumber(redis.call('HGET', KEY(4), 'serving_rate_limit'))
    if BLOCK < opens then
      return fail('RateLimited', 'uid ' .. uid .. ' served its axon recently; retry in ' .. istr(opens - BLOCK)
        .. ' blocks, at block ' .. istr(opens))
    end
  end
  return nil, {uid = uid}
end

local function apply(ctx)
  local axon = cjson.encode({host = ARG(2), port = ARG(3), protocol = ARG(4), version = ARG(5), block = istr(BLOCK)})
  redis.call('HSET', KEY(3), ctx.uid, axon)
  return {{'AxonServed', 'netuid', ARG(1), 'uid', ctx.uid, 'hotkey', SIGNER, 'host', ARG(2), 'port', ARG(3)}}
end
