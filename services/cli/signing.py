"""Who signs a command's extrinsic, and what the command reports once a block has included it.

Coldkey calls (create, register, stake, take, root register) unlock the wallet's coldkey (password
from AGORA_COLDKEY_PASSWORD or a prompt); hotkey calls (weights) load the wallet's hotkey, which
needs no password. `--dev NAME` signs with the dev key //NAME as coldkey and //NAME//HOTKEY as
hotkey (HOTKEY is --wallet.hotkey, default "default"), so a local network needs no wallets.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from bittensor_wallet import Keypair

from services.cli import output
from services.cli.output import CommandFailed
from services.cli.wallet_cmds import _check_name, _dev_name, _option, _unlock, _wallet_path_option
from services.common import keys

DEFAULT_HOTKEY = "default"


# ---- options ----

def signer_options(parser: argparse.ArgumentParser, *, hotkey: str) -> None:
    """--wallet.name W | --dev NAME, --wallet.path, and where the hotkey comes from.

    hotkey "target": the call names a hotkey: --wallet.hotkey H (default "default") or --hotkey SS58.
    hotkey "signer": the hotkey signs: --wallet.hotkey H only. hotkey "none": no hotkey at all.
    """
    who = parser.add_mutually_exclusive_group(required=True)
    _option(who, "wallet.name", metavar="NAME")
    who.add_argument("--dev", metavar="NAME",
                     help="sign with dev keys (local networks only): coldkey //NAME, hotkey //NAME//HOTKEY")
    _wallet_path_option(parser)
    if hotkey == "none":
        return
    hk = parser.add_mutually_exclusive_group() if hotkey == "target" else parser
    _option(hk, "wallet.hotkey", metavar="NAME",
            help=f"the wallet's hotkey (default {DEFAULT_HOTKEY!r}); with --dev, //NAME//HOTKEY")
    if hotkey == "target":
        hk.add_argument("--hotkey", metavar="SS58", help="a hotkey by address (e.g. a delegate's)")


def _hotkey_name(args: argparse.Namespace) -> str:
    return _check_name(args.wallet_hotkey or DEFAULT_HOTKEY, "hotkey name")


def dev_hotkey(name: str, hotkey: str = DEFAULT_HOTKEY) -> Keypair:
    """//Name//hotkey: the hotkey of a dev account under `--dev Name --wallet.hotkey hotkey`."""
    return Keypair.create_from_uri(f"//{_dev_name(name)}//{hotkey}")


def coldkey_address(args: argparse.Namespace) -> str:
    """The signing coldkey's address, without asking for a password."""
    if args.dev:
        return keys.dev_keypair(_dev_name(args.dev)).ss58_address
    return keys.coldkey_address(keys.wallet(_check_name(args.wallet_name, "wallet name"), path=args.wallet_path))


def unlock_coldkey(args: argparse.Namespace) -> Keypair:
    if args.dev:
        return keys.dev_keypair(_dev_name(args.dev))
    return _unlock(keys.wallet(_check_name(args.wallet_name, "wallet name"), path=args.wallet_path))


def hotkey_keypair(args: argparse.Namespace) -> Keypair:
    """The hotkey that signs: from the wallet (stored unencrypted, so no password) or the dev key."""
    if args.dev:
        return dev_hotkey(args.dev, _hotkey_name(args))
    w = keys.wallet(_check_name(args.wallet_name, "wallet name"), _hotkey_name(args), args.wallet_path)
    return keys.hotkey_keypair(w)


def hotkey_address(args: argparse.Namespace) -> str:
    """The hotkey a coldkey call names: --hotkey, else the wallet's (or dev) hotkey's address."""
    if getattr(args, "hotkey", None):
        return keys.check_address(args.hotkey, what="hotkey")
    if args.dev:
        return dev_hotkey(args.dev, _hotkey_name(args)).ss58_address
    w = keys.wallet(_check_name(args.wallet_name, "wallet name"), _hotkey_name(args), args.wallet_path)
    try:
        if w.hotkeypub_file.exists_on_device():
            return w.hotkeypub.ss58_address
    except Exception:  # the wallet core's KeyFileError for a damaged pub file: fall back to the key itself
        pass
    return keys.hotkey_keypair(w).ss58_address


# ---- submitting ----

@dataclass(frozen=True, slots=True)
class Included:
    """A call's extrinsic in its block, with the events it caused."""

    hash: str
    block: int
    index: int
    fee_rao: int
    events: list[tuple[str, dict[str, str]]]

    def event(self, name: str) -> dict[str, str]:
        for event_name, attributes in self.events:
            if event_name == name:
                return attributes
        return {}

    def fields(self) -> dict:
        return {"hash": self.hash, "block": self.block, "index": self.index, "success": True,
                "fee_rao": self.fee_rao, "fee_tao": output.tao_plain(self.fee_rao)}


def submit(target: str, keypair: Keypair, calls: list, *, what: str) -> list[Included]:
    """send() on a client of its own."""
    from services.chain.client import ChainClient

    async def run() -> list[Included]:
        async with ChainClient(target) as client:
            return await send(client, keypair, calls, what=what)

    return asyncio.run(run())


async def send(client, keypair: Keypair, calls: list, *, what: str) -> list[Included]:
    """Sign `calls` with consecutive nonces, queue them, wait for their blocks. A call the chain
    refuses at once raises its gRPC error; one that fails in its block raises the chain's error
    (the fee is paid). `what` names the action in messages ("register on subnet 1")."""
    nonce = (await client.account(keypair.ss58_address)).pool_nonce
    hashes = []
    for k, call in enumerate(calls):
        last = k == len(calls) - 1
        # only the last waits (the chain's default: 10 blocks): a signer's extrinsics are applied
        # in nonce order, so the others are in by then
        xt = await client.sign(keypair, call, nonce + k)
        resp = await client.submit(xt, wait=last)
        hashes.append(resp.hash)
    results = []
    for xt_hash in hashes:
        st = await client.status(xt_hash)
        _check_status(st, "0x" + xt_hash.hex(), what)
        blk = await client.block(st.block_number)
        events = [(e.name, dict(e.attributes)) for e in blk.events
                  if e.HasField("extrinsic_index") and e.extrinsic_index == st.index]
        results.append(Included(hash="0x" + xt_hash.hex(), block=st.block_number, index=st.index,
                                fee_rao=st.fee, events=events))
    return results


def _check_status(st, xt_hash: str, what: str) -> None:
    from agora.chain.v1 import chain_pb2

    S = chain_pb2.ExtrinsicStatus
    if st.state == S.QUEUED:
        raise CommandFailed("DEADLINE_EXCEEDED", f"{what}: extrinsic {xt_hash} is still queued and may yet be "
                            "included; check before sending it again")
    if st.state == S.DROPPED:
        reason = st.error or "a stale nonce or an unpaid fee"
        raise CommandFailed("FAILED_PRECONDITION", f"{what}: dropped when its block was built ({reason})")
    if st.state != S.INCLUDED:
        raise CommandFailed("UNKNOWN", f"{what}: extrinsic {xt_hash} is in state {S.State.Name(st.state)}")
    if not st.success:
        raise CommandFailed(_code_of(st.error), f"{what} failed in block {st.block_number}: {st.error}"
                            + (" (the fee was paid)" if st.fee else ""))


def _code_of(chain_error: str) -> str:
    """'UnknownSubnet: no subnet 7' -> 'NOT_FOUND': the code the chain gives that error at submit."""
    from services.chain.errors import CHAIN_ERRORS
    from services.common.error_mapping import status_code_for

    cls = CHAIN_ERRORS.get(chain_error.partition(":")[0].strip())
    return status_code_for(cls("")).name if cls is not None else "FAILED_PRECONDITION"


def report(args: argparse.Namespace, result: dict, people: list[tuple[str, object]], done: Included) -> None:
    """--json: result plus the inclusion fields; else `people` then block and fee lines."""
    if args.json:
        output.print_json({**result, **done.fields()})
        return
    output.print_fields([*people, ("block", f"{done.block} (index {done.index})"), ("result", "success"),
                         *([("fee", f"{output.tao(done.fee_rao)} TAO")] if done.fee_rao else []),
                         ("hash", done.hash)])
