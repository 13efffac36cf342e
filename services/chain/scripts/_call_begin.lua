-- Shared opening of every call script (ledger.py puts it after the prelude; _call_end.lua closes).
-- A call script defines check() and apply(ctx) and runs in one of two modes:
--   'check'  at submit time: run the call's checks against current state, write nothing. Reply:
--            the rao the call takes from the signer's free balance beyond the fee, or an error
--            reply '<ErrorName> <message>' (services/chain/errors.py maps the name).
--   'apply'  at block time, exactly once: lease fence, journal lookup, nonce and fee checks that
--            DROP the extrinsic, the fee burned, then check(): a refusal is ExtrinsicFailed and
--            changes nothing but nonce and fee; else apply(ctx) writes.
-- Common KEYS: [1] lease, [2] pending_results, [3] nonces, [4] free, [5] issuance, [6] burned,
--   [7] pool_next, [8] head; the call's own follow: KEY(1) is KEYS[9].
-- Common ARGV: [1] mode, [2] lease token, [3] index in block, [4] signer, [5] nonce, [6] fee (rao),
--   [7] block number ('' in check mode: the head's successor); the call's own follow: ARG(1) is ARGV[8].
-- Reply in apply mode: the result JSON {"applied","ok","error","events"}, journaled under the index.
local MODE, SIGNER, FEE = ARGV[1], ARGV[4], ARGV[6]
local BLOCK
if ARGV[7] ~= '' then
  BLOCK = tonumber(ARGV[7])
else
  BLOCK = tonumber(redis.call('HGET', KEYS[8], 'number') or '0') + 1
end
local function KEY(i) return KEYS[8 + i] end
local function ARG(i) return ARGV[7 + i] end
local function fail(name, message) return {name, message} end
