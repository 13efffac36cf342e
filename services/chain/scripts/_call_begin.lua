-- Shared opening of every call script (ledger.py puts it after the prelude; _call_end.lua closes).
-- A call script defines check() and apply(ctx) and runs in one of two modes:
--   'check'  at submit time: run the call's checks against current state, write nothing. Reply:
--            the rao the call takes from the signer's free balance beyond the fee, or an error
--            reply '<ErrorName> <message>' (services/chain/errors.py maps the name).
--   'apply'  at block time, exactly once: lease fence, journal lookup, the pool's hold released,
--            nonce and fee checks that DROP the extrinsic, the fee burned, then check(): a refusal
--            is ExtrinsicFailed and changes nothing but nonce and fee; else apply(ctx) writes.
-- Common KEYS: [1] lease, [2] pending_results, [3] nonces, [4] free, [5] issuance, [6] burned,
--   [7] pool_next, [8] head, [9..15] the pool's accounting (hold, reserved, count, bytes, tag, lanes,
--   stats), [16] free_call_failed; the call's own follow: KEY(1) is KEYS[17].
-- Common ARGV: [1] mode, [2] lease token, [3] index in block, [4] signer, [5] nonce, [6] fee (rao),
--   [7] block number ('' in check mode: the head's successor), [8] extrinsic hash (hex), [9] for a
--   fee-free hotkey call the cool-down in blocks after it fails in its block, else ''; the call's
--   own follow: ARG(1) is ARGV[10].
-- CALL, the call's name, is set by ledger.py above the prelude.
-- Reply in apply mode: the result JSON {"applied","ok","error","events"}, journaled under the index.
local MODE, SIGNER, FEE = ARGV[1], ARGV[4], ARGV[6]
local BLOCK
if ARGV[7] ~= '' then
  BLOCK = tonumber(ARGV[7])
else
  BLOCK = tonumber(redis.call('HGET', KEYS[8], 'number') or '0') + 1
end
local function KEY(i) return KEYS[16 + i] end
local function ARG(i) return ARGV[9 + i] end
local NARGS = #ARGV - 9  -- how many ARG()s the call has
local function fail(name, message) return {name, message} end
