"""`agora stake ...` and `agora delegate ...`: a coldkey's stake on hotkeys, and delegates' takes.

Stake moves between a coldkey's free balance and its stake on a hotkey; a delegate is a hotkey
whose owner accepts other coldkeys' stake for a take (a u16 fraction, at most 18%) of its dividends.
"""

from __future__ import annotations

import argparse
import asyncio
from decimal import Decimal, InvalidOperation

from services.cli import output, signing
from services.cli.subnet_cmds import short
from services.cli.wallet_cmds import _option, _wallet_path_option
from services.common import keys
from services.common.errors import InvalidRequest, OutOfRange
from services.common.units import U16_MAX, check_amount, parse_tao

MAX_TAKE = Decimal("0.18")   # the chain's MAX_TAKE_U16 (11796) as a fraction, rounded down to 0.18


def register(groups: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    stake = groups.add_parser("stake", help="stake TAO on hotkeys, unstake it, list it", allow_abbrev=False)
    commands = stake.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(sub, name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text, allow_abbrev=False)
        p.set_defaults(func=func)
        return p

    for name, func, text in (("add", add, "move TAO from your free balance to stake on a hotkey"),
                             ("remove", remove, "move stake on a hotkey back to your free balance")):
        p = command(commands, name, func, text)
        signing.signer_options(p, hotkey="target")
        p.add_argument("--amount", required=True, metavar="TAO", help="decimal TAO, at most 9 decimals")

    p = command(commands, "list", list_stake, "a coldkey's free balance and its stake on each hotkey")
    who = p.add_mutually_exclusive_group(required=True)
    _option(who, "wallet.name", metavar="NAME")
    who.add_argument("--address", metavar="SS58", help="any coldkey address")
    who.add_argument("--dev", metavar="NAME", help="the dev coldkey //NAME")
    _wallet_path_option(p)

    delegate = groups.add_parser("delegate", help="delegates: set your take, list them", allow_abbrev=False)
    dcommands = delegate.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = command(dcommands, "take", take, "make your hotkey a delegate (or change its take)")
    signing.signer_options(p, hotkey="target")
    p.add_argument("--take", required=True, metavar="FRACTION",
                   help=f"share of each dividend the delegate keeps, 0..{MAX_TAKE} (e.g. 0.18)")
    command(dcommands, "list", list_delegates, "every delegate: take, total stake, nominators, subnets")


# ---- stake ----

def add(args: argparse.Namespace) -> int:
    return _move(args, adding=True)


def remove(args: argparse.Namespace) -> int:
    return _move(args, adding=False)


def _move(args: argparse.Namespace, *, adding: bool) -> int:
    from services.chain.client import add_stake_call, remove_stake_call

    amount = check_amount(parse_tao(args.amount), what="amount")
    hotkey = signing.hotkey_address(args)
    keypair = signing.unlock_coldkey(args)
    call = add_stake_call(hotkey, amount) if adding else remove_stake_call(hotkey, amount)
    what = f"{'stake' if adding else 'unstake'} {output.tao(amount)} TAO on {hotkey}"
    done, info = asyncio.run(_send_then_read(args.chain, keypair, call, what))
    on_hotkey = next((s.amount for s in info.stakes if s.hotkey == hotkey), 0)
    result = {"action": "add" if adding else "remove", "coldkey": keypair.ss58_address, "hotkey": hotkey,
              "amount_rao": amount, "amount_tao": output.tao_plain(amount), "stake_rao": on_hotkey,
              "stake_tao": output.tao_plain(on_hotkey), "free_rao": info.free, "free_tao": output.tao_plain(info.free)}
    signing.report(args, result, [
        ("staked" if adding else "unstaked", f"{output.tao(amount)} TAO"), ("coldkey", keypair.ss58_address),
        ("hotkey", hotkey), ("stake now", f"{output.tao(on_hotkey)} TAO"), ("free now", f"{output.tao(info.free)} TAO"),
    ], done)
    return 0


async def _send_then_read(target: str, keypair, call, what: str):
    """The call's inclusion, then the signer's stake after it, on one channel."""
    from services.chain.client import ChainClient

    async with ChainClient(target) as client:
        (done,) = await signing.send(client, keypair, [call], what=what)
        return done, await client.stake(keypair.ss58_address)


async def _stake_info(target: str, coldkey: str):
    from services.chain.client import ChainClient

    async with ChainClient(target) as client:
        return await client.stake(coldkey)


def list_stake(args: argparse.Namespace) -> int:
    coldkey = keys.check_address(args.address, what="address") if args.address else signing.coldkey_address(args)
    info = asyncio.run(_stake_info(args.chain, coldkey))
    rows = [{"hotkey": s.hotkey, "stake_rao": s.amount, "stake_tao": output.tao_plain(s.amount),
             "hotkey_owner": s.hotkey_owner, "is_delegate": s.is_delegate,
             "take": s.take / U16_MAX if s.is_delegate else None} for s in info.stakes]
    if args.json:
        output.print_json({"coldkey": coldkey, "free_rao": info.free, "free_tao": output.tao_plain(info.free),
                           "total_stake_rao": info.total_stake, "total_stake_tao": output.tao_plain(info.total_stake),
                           "stakes": rows})
        return 0
    output.print_fields([("coldkey", coldkey), ("free", f"{output.tao(info.free)} TAO"),
                         ("staked", f"{output.tao(info.total_stake)} TAO")])
    if rows:
        print()
        output.print_table(
            ["HOTKEY", "STAKE (TAO)", "OWNER", "DELEGATE TAKE"],
            [[r["hotkey"], output.tao(r["stake_rao"]),
              "you" if r["hotkey_owner"] == coldkey else short(r["hotkey_owner"]),
              f"{100 * r['take']:.2f}%" if r["is_delegate"] else "-"] for r in rows],
            right=(1, 3),
        )
    return 0


# ---- delegates ----

def parse_take(text: str) -> int:
    """'0.18' -> 11796: the fraction as u16, rounded down (btcli's float_to_u16 truncates too)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidRequest(f"--take {text!r} is not a number: give a fraction such as 0.18") from None
    if not value.is_finite() or not 0 <= value <= MAX_TAKE:
        raise OutOfRange(f"--take {text}: need a fraction 0..{MAX_TAKE} (18% is the most a delegate may keep)")
    return int(value * U16_MAX)


def take(args: argparse.Namespace) -> int:
    from services.chain.client import set_delegate_take_call

    take_u16 = parse_take(args.take)
    hotkey = signing.hotkey_address(args)
    keypair = signing.unlock_coldkey(args)
    (done,) = signing.submit(args.chain, keypair, [set_delegate_take_call(hotkey, take_u16)],
                             what=f"set the take of {hotkey}")
    result = {"hotkey": hotkey, "owner": keypair.ss58_address, "take_u16": take_u16, "take": take_u16 / U16_MAX}
    signing.report(args, result, [("delegate", hotkey), ("owner", keypair.ss58_address),
                                  ("take", f"{100 * take_u16 / U16_MAX:.2f}% ({take_u16}/{U16_MAX})")], done)
    return 0


def list_delegates(args: argparse.Namespace) -> int:
    from services.chain.client import ChainClient

    async def read():
        async with ChainClient(args.chain) as client:
            return await client.delegates()

    rows = [{"hotkey": d.hotkey, "owner": d.owner, "take_u16": d.take, "take": d.take / U16_MAX,
             "total_stake_rao": d.total_stake, "total_stake_tao": output.tao_plain(d.total_stake),
             "nominators": d.nominators, "netuids": list(d.netuids)} for d in asyncio.run(read())]
    if args.json:
        output.print_json({"delegates": rows})
        return 0
    if not rows:
        output.note("no delegates yet: `agora delegate take --wallet.name W --wallet.hotkey H --take 0.18`")
        return 0
    output.print_table(
        ["HOTKEY", "OWNER", "TAKE", "TOTAL STAKE (TAO)", "NOMINATORS", "SUBNETS"],
        [[r["hotkey"], short(r["owner"]), f"{100 * r['take']:.2f}%", output.tao(r["total_stake_rao"]),
          r["nominators"], ",".join(map(str, r["netuids"])) or "-"] for r in rows],
        right=(2, 3, 4),
    )
    return 0
