"""`agora weights set|commit|reveal` and `agora root register|weights`: a validator's weights on a
subnet's uids, and the root subnet, whose members weight subnets to split the block reward.

On a subnet with commit_reveal_weights_enabled, weights go in two steps, as btcli's `weights commit`
and `weights reveal`: `commit` sends only the hash of uids, weights, a salt and the version key and
prints the salt and the window in which to reveal; `reveal` sends the same uids, weights and salt.

Weights are typed as decimals in any scale and sent as btcli sends them: max-upscaled to u16 (the
largest becomes 65535, each rounded half to even), zeros dropped. Weights are signed by the hotkey,
so they need no password and pay no fee.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from services.cli import signing
from services.common.errors import InvalidRequest
from services.common.units import MAX_AMOUNT_RAO, U16_MAX


def register(groups: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    weights = groups.add_parser("weights", help="set a validator's weights on a subnet", allow_abbrev=False)
    wcommands = weights.add_subparsers(dest="command", required=True, metavar="COMMAND")
    root = groups.add_parser("root", help="the root subnet: join it, weight subnets", allow_abbrev=False)
    rcommands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(sub, name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text, allow_abbrev=False)
        p.set_defaults(func=func)
        return p

    p = command(wcommands, "set", set_weights, "weights on uids of a subnet, signed by your hotkey")
    p.add_argument("--netuid", type=int, required=True)
    signing.signer_options(p, hotkey="signer")
    p.add_argument("--uids", required=True, metavar="0,1,2")
    p.add_argument("--weights", required=True, metavar="0.5,0.3,0.2", help="one per uid, any scale")
    p.add_argument("--version-key", type=int, default=0, metavar="K",
                   help="your validator's version; must be >= the subnet's weights_version (default 0)")

    for name, func, help_text in (
            ("commit", commit_weights, "commit-reveal: commit the hash of weights (prints the salt to reveal with)"),
            ("reveal", reveal_weights, "commit-reveal: reveal the weights and salt of an earlier commit")):
        p = command(wcommands, name, func, help_text)
        p.add_argument("--netuid", type=int, required=True)
        signing.signer_options(p, hotkey="signer")
        p.add_argument("--uids", required=True, metavar="0,1,2")
        p.add_argument("--weights", required=True, metavar="0.5,0.3,0.2", help="one per uid, any scale")
        p.add_argument("--salt", required=name == "reveal", metavar="1,2,3",
                       help="u16s (1..32 of them); commit draws 8 at random unless given")
        p.add_argument("--version-key", type=int, default=0, metavar="K")

    p = command(rcommands, "register", root_register, "put your hotkey on the root subnet (coldkey-signed)")
    signing.signer_options(p, hotkey="target")

    p = command(rcommands, "weights", root_weights, "a root member's weights on subnets, signed by its hotkey")
    signing.signer_options(p, hotkey="signer")
    p.add_argument("--netuids", required=True, metavar="1,2,3")
    p.add_argument("--weights", required=True, metavar="0.5,0.3,0.2", help="one per netuid, any scale")
    p.add_argument("--version-key", type=int, default=0, metavar="K")


def parse_ids(text: str, flag: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise InvalidRequest(f"{flag} {text!r}: need comma-separated integers, e.g. 0,1,2") from None
    if any(i < 0 for i in ids):
        raise InvalidRequest(f"{flag} {text!r}: ids start at 0")
    if len(set(ids)) != len(ids):
        raise InvalidRequest(f"{flag} {text!r}: each id may appear once")
    return ids


def u16_weights(ids: list[int], text: str, what: str) -> tuple[list[int], list[int]]:
    """btcli's convert_weights_and_uids_for_emit: max-upscale to u16, round, drop zeros."""
    try:
        values = [Decimal(part) for part in text.split(",")]
    except InvalidOperation:
        raise InvalidRequest(f"--weights {text!r}: need comma-separated numbers, e.g. 0.5,0.3,0.2") from None
    if len(values) != len(ids):
        raise InvalidRequest(f"{len(ids)} {what} but {len(values)} weights: give one weight per {what[:-1]}")
    if any(not v.is_finite() or v < 0 for v in values):
        raise InvalidRequest(f"--weights {text!r}: weights must be finite and >= 0")
    top = max(values)
    if top == 0:
        raise InvalidRequest("all weights are zero: give at least one positive weight")
    kept = [(i, int((v / top * U16_MAX).to_integral_value(ROUND_HALF_EVEN))) for i, v in zip(ids, values, strict=True)]
    kept = [(i, w) for i, w in kept if w]
    return [i for i, _ in kept], [w for _, w in kept]


def _version_key(value: int) -> int:
    if not 0 <= value <= MAX_AMOUNT_RAO:
        raise InvalidRequest(f"--version-key {value}: need 0..{MAX_AMOUNT_RAO}")
    return value


def set_weights(args: argparse.Namespace) -> int:
    from services.chain.client import set_weights_call

    if args.netuid <= 0:
        raise InvalidRequest(f"--netuid {args.netuid}: weights go on a subnet >= 1 (root: `agora root weights`)")
    uids, weights = u16_weights(parse_ids(args.uids, "--uids"), args.weights, "uids")
    version = _version_key(args.version_key)
    return _send_row(args, set_weights_call(args.netuid, uids, weights, version), "WeightsSet",
                     f"set weights on subnet {args.netuid}", uids, weights, version)


def _send_row(args: argparse.Namespace, call, event: str, what: str, uids: list[int], weights: list[int],
              version: int) -> int:
    """Sign a weights row's call with the hotkey, wait for its block, report the uid its event names."""
    keypair = signing.hotkey_keypair(args)
    (done,) = signing.submit(args.chain, keypair, [call], what=what)
    uid = done.event(event).get("uid")
    result = {"netuid": args.netuid, "hotkey": keypair.ss58_address, "uid": int(uid) if uid else None,
              "uids": uids, "weights_u16": weights, "version_key": version}
    signing.report(args, result, [("subnet", args.netuid), ("hotkey", f"{keypair.ss58_address} (uid {uid})"),
                                  ("weights", _shown(uids, weights))], done)
    return 0


def _salt(text: str | None) -> list[int]:
    if text is None:
        return [secrets.randbelow(U16_MAX + 1) for _ in range(8)]
    try:
        salt = [int(part) for part in text.split(",")]
    except ValueError:
        raise InvalidRequest(f"--salt {text!r}: need comma-separated u16s, e.g. 513,7,40000") from None
    if not 1 <= len(salt) <= 32 or any(not 0 <= v <= U16_MAX for v in salt):
        raise InvalidRequest(f"--salt {text!r}: need 1..32 values, each 0..{U16_MAX}")
    return salt


def _commit_reveal_row(args: argparse.Namespace) -> tuple[list[int], list[int], list[int], int]:
    if args.netuid <= 0:
        raise InvalidRequest(f"--netuid {args.netuid}: commit-reveal applies to subnets >= 1")
    uids, weights = u16_weights(parse_ids(args.uids, "--uids"), args.weights, "uids")
    return uids, weights, _salt(args.salt), _version_key(args.version_key)


def commit_weights(args: argparse.Namespace) -> int:
    from services.chain.client import commit_weights_call
    from services.chain.codec import weight_commit_hash
    from services.chain.subnets import reveal_window

    uids, weights, salt, version = _commit_reveal_row(args)
    keypair = signing.hotkey_keypair(args)
    digest = weight_commit_hash(bytes(keypair.public_key), args.netuid, uids, weights, salt, version)
    (done,) = signing.submit(args.chain, keypair, [commit_weights_call(args.netuid, digest)],
                             what=f"commit weights on subnet {args.netuid}")
    info = asyncio.run(_subnet(args.chain, args.netuid))
    hp = {h.name: h.value for h in info.hyperparameters}
    first, last = reveal_window(done.block, args.netuid, hp["tempo"], hp["commit_reveal_period"])
    salt_text = ",".join(map(str, salt))
    result = {"netuid": args.netuid, "hotkey": keypair.ss58_address, "commit_hash": "0x" + digest.hex(),
              "uids": uids, "weights_u16": weights, "salt": salt, "version_key": version,
              "commit_block": done.block, "first_reveal_block": first, "last_reveal_block": last}
    signing.report(args, result, [("subnet", args.netuid), ("hotkey", keypair.ss58_address),
                                  ("commit hash", "0x" + digest.hex()), ("weights", _shown(uids, weights)),
                                  ("salt", f"{salt_text} (keep it: the reveal needs it)"),
                                  ("reveal in blocks", f"{first}..{last}")], done)
    return 0


def reveal_weights(args: argparse.Namespace) -> int:
    from services.chain.client import reveal_weights_call

    uids, weights, salt, version = _commit_reveal_row(args)
    return _send_row(args, reveal_weights_call(args.netuid, uids, weights, salt, version), "WeightsRevealed",
                     f"reveal weights on subnet {args.netuid}", uids, weights, version)


async def _subnet(target: str, netuid: int):
    from services.chain.client import ChainClient

    async with ChainClient(target) as client:
        return await client.subnet(netuid)


def _shown(ids: list[int], weights: list[int]) -> str:
    total = sum(weights)
    return " ".join(f"{i}={w / total:.4f}" for i, w in zip(ids, weights, strict=True))


def root_register(args: argparse.Namespace) -> int:
    from services.chain.client import root_register_call

    hotkey = signing.hotkey_address(args)
    keypair = signing.unlock_coldkey(args)
    (done,) = signing.submit(args.chain, keypair, [root_register_call(hotkey)], what="register on root")
    event = done.event("RootRegistered")
    uid, replaced = int(event["uid"]), event.get("replaced", "")
    result = {"netuid": 0, "uid": uid, "hotkey": hotkey, "coldkey": keypair.ss58_address,
              "replaced": replaced or None}
    people: list[tuple[str, object]] = [("uid", uid), ("subnet", "0 (root)"), ("hotkey", hotkey)]
    if replaced:
        people.append(("replaced", replaced))
    signing.report(args, result, people, done)
    return 0


def root_weights(args: argparse.Namespace) -> int:
    from services.chain.client import set_root_weights_call

    netuids = parse_ids(args.netuids, "--netuids")
    if 0 in netuids:
        raise InvalidRequest("--netuids: root weights go on subnets >= 1, not on root itself")
    netuids, weights = u16_weights(netuids, args.weights, "netuids")
    version = _version_key(args.version_key)
    keypair = signing.hotkey_keypair(args)
    (done,) = signing.submit(args.chain, keypair, [set_root_weights_call(netuids, weights, version)],
                             what="set root weights")
    uid = done.event("RootWeightsSet").get("uid")
    result = {"netuid": 0, "hotkey": keypair.ss58_address, "uid": int(uid) if uid else None,
              "netuids": netuids, "weights_u16": weights, "version_key": version}
    signing.report(args, result, [("root member", f"{keypair.ss58_address} (uid {uid})"),
                                  ("weights", _shown(netuids, weights))], done)
    return 0
