-- transfer: move rao from the signer's free balance to another account.
-- ARG(1) dest, ARG(2) amount (rao, 1..2^53-1, checked by the caller)
-- At submit the pool's reservation (submit.lua) already holds fee + amount for it, so the balance
-- is checked here only when the block applies it, after the fee.
local function check()
  if MODE == 'apply' then
    local left = hget0(KEYS[4], SIGNER)
    if not ge(left, ARG(2)) then
      return fail('InsufficientFunds', 'balance ' .. left .. ' rao < amount ' .. ARG(2) .. ' rao')
    end
  end
  return nil, {}
end

local function apply(ctx)
  hdecr(KEYS[4], SIGNER, ARG(2))
  redis.call('HINCRBY', KEYS[4], ARG(1), ARG(2))
  return {{'Transfer', 'from', SIGNER, 'to', ARG(1), 'amount', ARG(2)}}
end
