"""The only package that knows Redis key names or sends writes to the chain's state.

`Ledger` gathers its parts: core (scripts, genesis, pool, blocks, accounts), reads (subnets,
stake, delegates) and economy (coinbase, epoch payouts, issuance accounting). Key names are in
keys.py, each call's script arguments in calls.py.
"""

from services.chain.ledger.core import (
    AccountState,
    ApplyResult,
    LedgerCore,
    NotLeader,
    PendingBlock,
)
from services.chain.ledger.economy import Economy, EconomyWrites, epoch_step
from services.chain.ledger.keys import StateKeys, SubnetKeys
from services.chain.ledger.reads import DelegateRow, StakeRow, SubnetReads


class Ledger(SubnetReads, EconomyWrites, LedgerCore):
    """One network's state in Redis."""


__all__ = [
    "AccountState", "ApplyResult", "DelegateRow", "Economy", "Ledger", "NotLeader",
    "PendingBlock", "StakeRow", "StateKeys", "SubnetKeys", "epoch_step",
]
