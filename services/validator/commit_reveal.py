"""The validator's side of commit-reveal weights: what it committed and must reveal later.

A commit is remembered (uids, weights, salt, version key, hash) from before it is sent until it is
revealed or has expired, in the validator's store, so a restarted validator still reveals what it
committed. A commit saved but never included (the validator stopped before its block) is known by
its hash: the chain's metagraph lists the hotkey's pending commits, and one it does not list after
its block would have come is forgotten.

    pending = new_commit(public_key, netuid, uids, weights, version_key)
    ... commit_weights_call(netuid, pending.hash) lands in block b: pending = pending.landed(b)
    ready, expired, waiting = sort_commits(commits, view, next_block)
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from services.chain.codec import weight_commit_hash
from services.chain.subnets import reveal_window
from services.common.units import U16_MAX
from services.validator.subnet import SubnetView

SALT_U16S = 8


@dataclass(frozen=True, slots=True)
class PendingCommit:
    netuid: int
    uids: tuple[int, ...]
    weights: tuple[int, ...]
    salt: tuple[int, ...]
    version_key: int
    hash: bytes
    commit_block: int = 0     # 0: sent (or about to be), its block not known yet

    def landed(self, block: int) -> PendingCommit:
        return replace(self, commit_block=block)

    def window(self, view: SubnetView) -> tuple[int, int]:
        return reveal_window(self.commit_block, self.netuid, view.tempo, view.commit_reveal_period)

    def to_dict(self) -> dict:
        return {"netuid": self.netuid, "uids": list(self.uids), "weights": list(self.weights),
                "salt": list(self.salt), "version_key": self.version_key, "hash": self.hash.hex(),
                "commit_block": self.commit_block}

    @classmethod
    def from_dict(cls, d: Mapping) -> PendingCommit:
        try:
            return cls(int(d["netuid"]), tuple(map(int, d["uids"])), tuple(map(int, d["weights"])),
                       tuple(map(int, d["salt"])), int(d["version_key"]), bytes.fromhex(d["hash"]),
                       int(d["commit_block"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a saved weights commit ({exc!r}): {str(d)[:200]}") from None


def new_commit(public_key: bytes, netuid: int, uids: Sequence[int], weights: Sequence[int],
               version_key: int) -> PendingCommit:
    """A commit of this row with a fresh random salt (secrets: a guessable salt lets a copier test
    candidate rows against the public hash)."""
    salt = tuple(secrets.randbelow(U16_MAX + 1) for _ in range(SALT_U16S))
    digest = weight_commit_hash(public_key, netuid, uids, weights, salt, version_key)
    return PendingCommit(netuid, tuple(uids), tuple(weights), salt, version_key, digest)


def sort_commits(commits: Sequence[PendingCommit], view: SubnetView, hotkey: str,
                 next_block: int) -> tuple[list[PendingCommit], list[PendingCommit], list[PendingCommit]]:
    """(ready to reveal in `next_block`, expired or lost, still waiting), each oldest first.

    A commit whose block is unknown was saved by a validator that stopped while sending it (the
    validator sends one commit at a time and records its block before it looks again): it takes its
    block from the chain's list of the hotkey's commits, or is lost if the chain does not list it.
    A commit the chain no longer lists was revealed (by a run that stopped before noting it) or expired."""
    me = view.neuron(hotkey)
    on_chain = dict(me.commits) if me is not None else {}
    ready, gone, waiting = [], [], []
    for c in commits:
        if c.commit_block == 0:
            block = on_chain.get(c.hash)
            if block is None:
                gone.append(c)
                continue
            c = c.landed(block)
        first, last = c.window(view)
        if next_block > last or (c.hash not in on_chain and view.block >= c.commit_block):
            gone.append(c)
        elif next_block >= first:
            ready.append(c)
        else:
            waiting.append(c)
    return ready, gone, waiting
