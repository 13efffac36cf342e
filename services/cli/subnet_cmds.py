"""`agora subnets ...`: list, create, hyperparameters, metagraph and register, as btcli names them.

Reads are one RPC each (ListSubnets, GetSubnet, GetMetagraph). Everything that can be checked
before signing (netuid exists, hyperparameter bounds, the burn against --max-burn, who owns the
subnet) is checked before a password is asked for, so a doomed command costs nothing.
"""

from __future__ import annotations

import argparse
import asyncio

from services.cli import output, signing
from services.cli.output import CommandFailed
from services.cli.parsing import command_adder
from services.cli.wallet_cmds import _option, _wallet_path_option
from services.common.errors import InvalidRequest, OutOfRange, PermissionDenied
from services.common.units import U16_MAX, parse_tao

TASK_NAMES = ("next-token", "translation", "embedding")
U16_FIELDS = ("rank", "trust", "consensus", "incentive", "dividends", "validator_trust")


def register(groups: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    subnets = groups.add_parser("subnets", help="subnets: list, create, hyperparameters, metagraph, register",
                                allow_abbrev=False)
    command = command_adder(subnets, common)

    command("list", list_subnets, "every subnet: task, size, tempo, emission share, burn, owner")

    p = command("create", create, "create a subnet owned by your coldkey (locks the network's lock cost)")
    signing.signer_options(p, hotkey="target")
    p.add_argument("--task", required=True, choices=TASK_NAMES)
    p.add_argument("--name", required=True, help="display name, 1..64 printable characters")

    p = command("hyperparameters", hyperparameters,
                "a subnet's hyperparameters with their bounds; --set NAME=VALUE as its owner")
    p.add_argument("--netuid", type=int, required=True)
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
                   help="change one (repeatable); values in the chain's units (blocks, u16, rao)")
    who = p.add_mutually_exclusive_group()
    _option(who, "wallet.name", metavar="NAME", help="the owner's wallet (with --set)")
    who.add_argument("--dev", metavar="NAME", help="sign with the dev coldkey //NAME (with --set)")
    _wallet_path_option(p)

    p = command("metagraph", metagraph, "one row per uid: stake, rank, trust, incentive, dividends, emission")
    p.add_argument("--netuid", type=int, required=True)
    p.add_argument("--weights", action="store_true", help="also each uid's weights")
    p.add_argument("--bonds", action="store_true", help="also each uid's bonds")

    p = command("register", register_neuron, "register a hotkey on a subnet by burning the registration cost")
    p.add_argument("--netuid", type=int, required=True)
    signing.signer_options(p, hotkey="target")
    p.add_argument("--max-burn", metavar="TAO", help="fail instead of burning more than this")


# ---- formatting ----

def short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address


def tao_short(rao: int) -> str:
    """For wide tables: 4 decimals, rounded down (--json carries exact rao)."""
    whole, frac = divmod(rao, 10**9)
    return f"{whole:,}.{frac // 10**5:04d}"


def fraction(u16: int) -> str:
    return f"{u16 / U16_MAX:.4f}"


def task_name(task: int) -> str:
    from agora.chain.v1 import chain_pb2

    return "-" if task == 0 else chain_pb2.Task.Name(task).lower().replace("_", "-")


def _check_netuid(netuid: int) -> int:
    if netuid < 0:
        raise InvalidRequest(f"--netuid {netuid}: netuids start at 0")
    return netuid


async def _read(target: str, call):
    from services.chain.client import ChainClient

    async with ChainClient(target) as client:
        return await call(client)


def _hp(info) -> dict[str, int]:
    return {h.name: h.value for h in info.hyperparameters}


# ---- list ----

def subnet_dict(s, share: float) -> dict:
    hp = _hp(s)
    return {"netuid": s.netuid, "name": s.name, "task": task_name(s.task), "metric": s.metric,
            "owner_coldkey": s.owner_coldkey, "owner_hotkey": s.owner_hotkey, "n": s.n,
            "max_uids": hp.get("max_allowed_uids", 0), "tempo": hp.get("tempo", 0),
            "emission_per_block_rao": s.emission_per_block, "emission_share": share,
            "burn_rao": s.burn, "burn_tao": output.tao_plain(s.burn), "locked_rao": s.locked,
            "pending_emission_rao": s.pending_emission, "registered_block": s.registered_block,
            "last_epoch_block": s.last_epoch_block, "next_epoch_block": s.next_epoch_block}


def list_subnets(args: argparse.Namespace) -> int:
    subnets = asyncio.run(_read(args.chain, lambda c: c.subnets()))
    total = sum(s.emission_per_block for s in subnets)
    rows = [subnet_dict(s, s.emission_per_block / total if total else 0.0) for s in subnets]
    if args.json:
        output.print_json({"subnets": rows})
        return 0
    output.print_table(
        ["NETUID", "NAME", "TASK", "METRIC", "N", "TEMPO", "EMISSION", "BURN (TAO)", "OWNER"],
        [[r["netuid"], r["name"] or ("root" if r["netuid"] == 0 else "-"), r["task"], r["metric"] or "-",
          f"{r['n']}/{r['max_uids']}", r["tempo"] if r["netuid"] else "-",
          f"{100 * r['emission_share']:.2f}%", output.tao(r["burn_rao"]) if r["netuid"] else "-",
          short(r["owner_coldkey"]) or "-"] for r in rows],
        right=(0, 4, 5, 6, 7),
    )
    return 0


# ---- create ----

def create(args: argparse.Namespace) -> int:
    from services.chain.client import register_network_call

    name = args.name
    if not name or len(name) > 64 or not name.isprintable():
        raise InvalidRequest(f"--name {name[:64]!r}: need 1..64 printable characters")
    hotkey = signing.hotkey_address(args)
    keypair = signing.unlock_coldkey(args)
    (done,) = signing.submit(args.chain, keypair, [register_network_call(args.task, name, hotkey)],
                             what=f"create subnet {name!r}")
    event = done.event("NetworkRegistered")
    netuid = int(event["netuid"])
    locked = int(event.get("locked", 0))
    result = {"netuid": netuid, "name": name, "task": args.task, "owner_coldkey": keypair.ss58_address,
              "owner_hotkey": hotkey, "locked_rao": locked, "locked_tao": output.tao_plain(locked)}
    signing.report(args, result, [("netuid", netuid), ("subnet", f"{name} ({args.task})"),
                                  ("owner", keypair.ss58_address), ("owner hotkey", hotkey),
                                  ("locked", f"{output.tao(locked)} TAO")], done)
    return 0


# ---- hyperparameters ----

def _parse_assignment(text: str, known: dict[str, tuple[int, int, int]]) -> tuple[str, int]:
    name, sep, value_text = text.partition("=")
    name = name.strip()
    if not sep:
        raise InvalidRequest(f"--set {text!r}: write NAME=VALUE, e.g. --set tempo=100")
    if name not in known:
        raise InvalidRequest(f"--set {text!r}: no hyperparameter {name!r}; known: {', '.join(sorted(known))}")
    try:
        value = int(value_text.strip())
    except ValueError:
        raise InvalidRequest(f"--set {text!r}: the value must be an integer in the chain's units") from None
    _, low, high = known[name]
    if not low <= value <= high:
        raise OutOfRange(f"{name} {value} is out of range: allowed {low}..{high}")
    return name, value


def hyperparameters(args: argparse.Namespace) -> int:
    netuid = _check_netuid(args.netuid)
    info = asyncio.run(_read(args.chain, lambda c: c.subnet(netuid)))
    if args.assignments:
        return _set_hyperparameters(args, info)
    if args.wallet_name or args.dev:
        raise InvalidRequest("--wallet.name/--dev sign a change: add --set NAME=VALUE")
    settable = netuid != 0
    rows = [{"name": h.name, "value": h.value, "min": h.min, "max": h.max, "owner_settable": settable,
             "description": h.description} for h in info.hyperparameters]
    if args.json:
        output.print_json({"netuid": netuid, "owner_coldkey": info.owner_coldkey, "burn_rao": info.burn,
                           "next_epoch_block": info.next_epoch_block, "hyperparameters": rows})
        return 0
    output.print_fields([("subnet", f"{netuid} {info.name or ('root' if netuid == 0 else '')}".rstrip()),
                         ("owner", info.owner_coldkey or "none (root: the network's settings)"),
                         ("burn now", f"{output.tao(info.burn)} TAO" if netuid else "-"),
                         ("next epoch", f"block {info.next_epoch_block}" if netuid else "-")])
    print()
    output.print_table(["NAME", "VALUE", "MIN", "MAX", "OWNER SETS", "DESCRIPTION"],
                       [[r["name"], r["value"], r["min"], r["max"], "yes" if settable else "no",
                         r["description"]] for r in rows], right=(1, 2, 3))
    return 0


def _set_hyperparameters(args: argparse.Namespace, info) -> int:
    from services.chain.client import set_hyperparameter_call

    netuid = info.netuid
    if not (args.wallet_name or args.dev):
        raise InvalidRequest("--set needs the owner's key: --wallet.name NAME or --dev NAME")
    if netuid == 0:
        raise InvalidRequest("the root subnet's hyperparameters are the network's settings and have no owner")
    known = {h.name: (h.value, h.min, h.max) for h in info.hyperparameters}
    changes = [_parse_assignment(text, known) for text in args.assignments]
    signer = signing.coldkey_address(args)
    if signer != info.owner_coldkey:
        raise PermissionDenied(f"subnet {netuid} is owned by {info.owner_coldkey}, not {signer}")
    keypair = signing.unlock_coldkey(args)
    calls = [set_hyperparameter_call(netuid, name, value) for name, value in changes]
    done = signing.submit(args.chain, keypair, calls, what=f"set hyperparameters of subnet {netuid}")
    changed = [{"name": name, "old": known[name][0], "value": value, "block": d.block}
               for (name, value), d in zip(changes, done, strict=True)]
    if args.json:
        output.print_json({"netuid": netuid, "changed": changed, **done[-1].fields()})
        return 0
    output.print_fields([(c["name"], f"{c['old']} -> {c['value']} (block {c['block']})") for c in changed])
    return 0


# ---- metagraph ----

def neuron_dict(nr, head: int) -> dict:
    d = {"uid": nr.uid, "hotkey": nr.hotkey, "coldkey": nr.coldkey, "stake_rao": nr.stake,
         "stake_tao": output.tao_plain(nr.stake)}
    for name in U16_FIELDS:
        value = getattr(nr, name)
        d[name] = value / U16_MAX
        d[f"{name}_u16"] = value
    d |= {"emission_rao": nr.emission, "emission_tao": output.tao_plain(nr.emission),
          "validator_permit": nr.validator_permit, "active": nr.active, "last_update": nr.last_update,
          "updated_blocks_ago": max(0, head - nr.last_update), "registered_block": nr.registered_block,
          "pruning_score_u16": nr.pruning_score,
          "axon": ({"host": nr.axon.host, "port": nr.axon.port, "protocol": nr.axon.protocol,
                    "version": nr.axon.version, "block": nr.axon.block} if nr.HasField("axon") else None)}
    if nr.HasField("weights"):
        d["weights"] = [[u, v] for u, v in zip(nr.weights.uids, nr.weights.values, strict=True)]
    if nr.HasField("bonds"):
        d["bonds"] = [[u, v] for u, v in zip(nr.bonds.uids, nr.bonds.values, strict=True)]
    d["commits"] = [{"commit_hash": "0x" + c.commit_hash.hex(), "commit_block": c.commit_block,
                     "first_reveal_block": c.first_reveal_block, "last_reveal_block": c.last_reveal_block}
                    for c in nr.commits]
    return d


def metagraph(args: argparse.Namespace) -> int:
    netuid = _check_netuid(args.netuid)
    m = asyncio.run(_read(args.chain, lambda c: c.metagraph(netuid, weights=args.weights, bonds=args.bonds)))
    neurons = [neuron_dict(nr, m.block) for nr in m.neurons]
    if args.json:
        output.print_json({"netuid": m.netuid, "block": m.block, "last_epoch_block": m.last_epoch_block,
                           "neurons": neurons})
        return 0
    epoch = f"last epoch at block {m.last_epoch_block}" if m.last_epoch_block else "no epoch yet"
    print(f"subnet {m.netuid} at block {m.block}: {len(neurons)} uids, {epoch}")
    if not neurons:
        return 0
    output.print_table(
        ["UID", "HOTKEY", "COLDKEY", "STAKE", "RANK", "TRUST", "CONSENSUS", "INCENTIVE", "DIVIDENDS",
         "EMISSION", "VTRUST", "VPERMIT", "UPDATED", "AXON"],
        [[n["uid"], short(n["hotkey"]), short(n["coldkey"]), tao_short(n["stake_rao"]),
          *(fraction(n[f"{f}_u16"]) for f in ("rank", "trust", "consensus", "incentive", "dividends")),
          tao_short(n["emission_rao"]), fraction(n["validator_trust_u16"]), "*" if n["validator_permit"] else "",
          n["updated_blocks_ago"], f"{n['axon']['host']}:{n['axon']['port']}" if n["axon"] else "-"]
         for n in neurons],
        right=(0, *range(3, 13)),
    )
    committed = [(n["uid"], c) for n in neurons for c in n["commits"]]
    if committed:
        print("\npending weight commits (commit-reveal)")
        for uid, c in committed:
            print(f"  {uid}: {c['commit_hash'][:18]}... committed in block {c['commit_block']}, "
                  f"reveal in blocks {c['first_reveal_block']}..{c['last_reveal_block']}")
    for what in ("weights", "bonds") if args.weights or args.bonds else ():
        if not getattr(args, what):
            continue
        rows = [(n["uid"], n[what]) for n in neurons if n.get(what)]
        print(f"\n{what} (uid: target=share of the row)" if what == "weights" else "\nbonds (uid: target=bond)")
        if not rows:
            print("  none")
        for uid, row in rows:
            total = sum(v for _, v in row) if what == "weights" else U16_MAX
            print(f"  {uid}: " + " ".join(f"{target}={value / total:.4f}" for target, value in row))
    return 0


# ---- register ----

def register_neuron(args: argparse.Namespace) -> int:
    from services.chain.client import burned_register_call

    netuid = _check_netuid(args.netuid)
    if netuid == 0:
        raise InvalidRequest("the root subnet is joined with `agora root register`")
    max_burn = parse_tao(args.max_burn) if args.max_burn is not None else 0
    hotkey = signing.hotkey_address(args)
    info = asyncio.run(_read(args.chain, lambda c: c.subnet(netuid)))
    if args.max_burn is not None and info.burn > max_burn:
        raise CommandFailed("FAILED_PRECONDITION", f"the registration burn of subnet {netuid} is "
                            f"{output.tao(info.burn)} TAO, above --max-burn {output.tao(max_burn)} TAO; "
                            "nothing was sent")
    keypair = signing.unlock_coldkey(args)
    # max_burn travels with the call too: the burn may rise between this read and the block
    (done,) = signing.submit(args.chain, keypair, [burned_register_call(netuid, hotkey, max_burn)],
                             what=f"register on subnet {netuid}")
    event = done.event("NeuronRegistered")
    uid, burn = int(event["uid"]), int(event.get("burn", 0))
    replaced = event.get("replaced", "")
    result = {"netuid": netuid, "uid": uid, "hotkey": hotkey, "coldkey": keypair.ss58_address,
              "burn_rao": burn, "burn_tao": output.tao_plain(burn), "replaced": replaced or None}
    people: list[tuple[str, object]] = [("uid", uid), ("subnet", netuid), ("hotkey", hotkey),
                                        ("burned", f"{output.tao(burn)} TAO")]
    if replaced:
        people.append(("replaced", replaced))
    signing.report(args, result, people, done)
    return 0
