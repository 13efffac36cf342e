"""`agora wallet ...`: keys on disk in btcli's layout, balances and transfers on the chain.

Coldkeys are encrypted with a password unless asked otherwise; hotkeys are not (as in btcli).
An existing key is never replaced without --overwrite (btcli#861). Passwords come from
AGORA_COLDKEY_PASSWORD or a prompt and are never printed; a new mnemonic is shown once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
from pathlib import Path

from bittensor_wallet import Keypair, Wallet

from services.cli import output
from services.cli.output import CommandFailed
from services.cli.parsing import command_adder
from services.common import keys
from services.common.errors import Conflict, InvalidRequest
from services.common.units import check_amount, parse_tao

PASSWORD_ENV = "AGORA_COLDKEY_PASSWORD"
WALLET_PATH_ENV = "AGORA_WALLET_PATH"
MNEMONIC_WORDS = (12, 15, 18, 21, 24)
# A wallet or hotkey name becomes a file name: no separators, so it cannot point outside the wallet path.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


# ---- options ----

def _option(parser: argparse.ArgumentParser, dotted: str, **kwargs: object) -> None:
    """btcli's dotted flag (--wallet.name) plus a dashed alias (--wallet-name), one dest (wallet_name)."""
    flags = [f"--{dotted}"]
    if "." in dotted:
        flags.append(f"--{dotted.replace('.', '-')}")
    parser.add_argument(*flags, dest=dotted.replace(".", "_").replace("-", "_"), **kwargs)  # type: ignore[arg-type]


def _wallet_path_option(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get(WALLET_PATH_ENV) or str(keys.DEFAULT_WALLET_PATH)
    _option(parser, "wallet.path", default=default, metavar="DIR",
            help=f"where wallets live (env {WALLET_PATH_ENV}, default {keys.DEFAULT_WALLET_PATH})")


def register(groups: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    wallet = groups.add_parser("wallet", help="keys, balances and transfers", allow_abbrev=False)
    command = command_adder(wallet, common)

    for regen in (False, True):
        p = command("regen-coldkey" if regen else "new-coldkey", regen_coldkey if regen else new_coldkey,
                    "restore a coldkey from its mnemonic" if regen
                    else "create a coldkey (encrypted by default)")
        _option(p, "wallet.name", required=True, metavar="NAME")
        _wallet_path_option(p)
        if regen:
            p.add_argument("--mnemonic", help="the words, quoted; omit to type them at a hidden prompt")
        else:
            p.add_argument("--n-words", type=int, choices=MNEMONIC_WORDS, default=12)
        p.add_argument("--no-password", action="store_true",
                       help=f"store the coldkey unencrypted (else password from {PASSWORD_ENV} or a prompt)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing coldkey")

    for regen in (False, True):
        p = command("regen-hotkey" if regen else "new-hotkey", regen_hotkey if regen else new_hotkey,
                    "restore a hotkey from its mnemonic" if regen else "create a hotkey (stored unencrypted)")
        _option(p, "wallet.name", required=True, metavar="NAME")
        _option(p, "wallet.hotkey", default="default", metavar="NAME")
        _wallet_path_option(p)
        if regen:
            p.add_argument("--mnemonic", help="the words, quoted; omit to type them at a hidden prompt")
        else:
            p.add_argument("--n-words", type=int, choices=MNEMONIC_WORDS, default=12)
        p.add_argument("--overwrite", action="store_true", help="replace an existing hotkey")

    p = command("list", list_wallets, "wallets with their coldkey and hotkey addresses (no password needed)")
    _wallet_path_option(p)

    p = command("balance", balance, "free balance and nonce from the chain")
    who = p.add_mutually_exclusive_group(required=True)
    _option(who, "wallet.name", metavar="NAME")
    who.add_argument("--address", metavar="SS58")
    who.add_argument("--dev", metavar="NAME", help="a dev account: Alice, Bob, ...")
    who.add_argument("--all", action="store_true", help="every wallet under --wallet.path")
    _wallet_path_option(p)

    p = command("transfer", transfer, "send TAO from a coldkey (or a dev key) to an address")
    signer = p.add_mutually_exclusive_group(required=True)
    _option(signer, "wallet.name", metavar="NAME")
    signer.add_argument("--dev", metavar="NAME", help="sign with the dev key //NAME (local networks only)")
    _wallet_path_option(p)
    p.add_argument("--dest", required=True, metavar="SS58")
    p.add_argument("--amount", required=True, metavar="TAO", help="decimal TAO, at most 9 decimals")
    p.add_argument("--no-wait", action="store_true", help="return once queued, without waiting for a block")


# ---- keys on disk ----

def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequest(f"{what} {name!r}: use letters, digits, '_', '-' or '.', "
                             "not starting with '.' or '-'")
    return name


def _open_wallet(args: argparse.Namespace, hotkey: str = "default") -> Wallet:
    return keys.wallet(_check_name(args.wallet_name, "wallet name"), hotkey, args.wallet_path)


def _read_secret(prompt: str) -> str:
    return getpass.getpass(prompt)


def _new_password(wallet_name: str) -> str:
    """From the environment, else typed twice. Never returned to anything that prints."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = _read_secret(f"password for the coldkey of wallet {wallet_name!r}: ")
        if password and _read_secret("again: ") != password:
            raise InvalidRequest("the two passwords differ; nothing was written")
    if not password:
        raise InvalidRequest("empty password refused: type one, or pass --no-password "
                             "to store the key unencrypted")
    return password


def _mnemonic(args: argparse.Namespace) -> Keypair:
    words = args.mnemonic if args.mnemonic is not None else _read_secret("mnemonic: ")
    try:
        return Keypair.create_from_mnemonic(" ".join(words.split()))
    except ValueError:  # never echo the words: they are the key
        raise InvalidRequest("the mnemonic is not a valid BIP39 phrase of 12 to 24 words") from None


def _refuse_overwrite(files: tuple, what: str, overwrite: bool) -> None:
    existing = [f.path for f in files if f.exists_on_device()]
    if existing and not overwrite:
        raise Conflict(f"{what} already exists at {existing[0]}: pass --overwrite to replace it "
                       "(its funds are lost unless you have its mnemonic)")


def _save_coldkey(args: argparse.Namespace, w: Wallet, keypair: Keypair, mnemonic: str | None) -> int:
    password = None if args.no_password else _new_password(w.name)
    with keys.quiet_stdout():
        w.set_coldkey(keypair, encrypt=password is not None, overwrite=True, coldkey_password=password)
        w.set_coldkeypub(keypair, overwrite=True)
    result = {"wallet": w.name, "coldkey": keypair.ss58_address, "path": w.coldkey_file.path,
              "encrypted": password is not None}
    _report_new_key(args, result, mnemonic)
    return 0


def _save_hotkey(args: argparse.Namespace, w: Wallet, keypair: Keypair, mnemonic: str | None) -> int:
    with keys.quiet_stdout():
        w.set_hotkey(keypair, encrypt=False, overwrite=True)
        w.set_hotkeypub(keypair, overwrite=True)
    result = {"wallet": w.name, "hotkey_name": w.hotkey_str, "hotkey": keypair.ss58_address,
              "path": w.hotkey_file.path}
    _report_new_key(args, result, mnemonic)
    return 0


def _report_new_key(args: argparse.Namespace, result: dict, mnemonic: str | None) -> None:
    if args.json:
        output.print_json({**result, "mnemonic": mnemonic} if mnemonic else result)
        return
    output.print_fields((k, {True: "yes", False: "no"}.get(v, v) if isinstance(v, bool) else v)
                        for k, v in result.items())
    if mnemonic:
        output.note("\nWrite this mnemonic down and keep it offline. It is the only way to recover the key,\n"
                    "and it is shown only this once:\n\n    " + mnemonic + "\n")


def new_coldkey(args: argparse.Namespace) -> int:
    w = _open_wallet(args)
    _refuse_overwrite((w.coldkey_file, w.coldkeypub_file), f"wallet {w.name!r} coldkey", args.overwrite)
    mnemonic = Keypair.generate_mnemonic(args.n_words)
    return _save_coldkey(args, w, Keypair.create_from_mnemonic(mnemonic), mnemonic)


def regen_coldkey(args: argparse.Namespace) -> int:
    w = _open_wallet(args)
    _refuse_overwrite((w.coldkey_file, w.coldkeypub_file), f"wallet {w.name!r} coldkey", args.overwrite)
    return _save_coldkey(args, w, _mnemonic(args), None)


def new_hotkey(args: argparse.Namespace) -> int:
    w = _open_wallet(args, _check_name(args.wallet_hotkey, "hotkey name"))
    _refuse_overwrite((w.hotkey_file, w.hotkeypub_file), f"hotkey {w.hotkey_str!r} of wallet {w.name!r}",
                      args.overwrite)
    mnemonic = Keypair.generate_mnemonic(args.n_words)
    return _save_hotkey(args, w, Keypair.create_from_mnemonic(mnemonic), mnemonic)


def regen_hotkey(args: argparse.Namespace) -> int:
    w = _open_wallet(args, _check_name(args.wallet_hotkey, "hotkey name"))
    _refuse_overwrite((w.hotkey_file, w.hotkeypub_file), f"hotkey {w.hotkey_str!r} of wallet {w.name!r}",
                      args.overwrite)
    return _save_hotkey(args, w, _mnemonic(args), None)


def _coldkey_address(w: Wallet) -> str | None:
    try:
        return w.coldkeypub.ss58_address if w.coldkeypub_file.exists_on_device() else None
    except Exception:  # the Rust core's KeyFileError for a damaged file: list the wallet without an address
        return None


def _hotkey_address(w: Wallet) -> str | None:
    """From the pub file; an old wallet without one is read only if unencrypted (never prompts)."""
    try:
        if w.hotkeypub_file.exists_on_device():
            return w.hotkeypub.ss58_address
        if w.hotkey_file.exists_on_device() and not w.hotkey_file.is_encrypted():
            return w.hotkey.ss58_address
    except Exception:  # as above
        return None
    return None


def scan_wallets(path: Path) -> list[dict]:
    """Every wallet directory under path: its coldkey address (or None) and hotkeys."""
    if not path.is_dir():
        return []
    found = []
    for wdir in sorted(p for p in path.iterdir() if p.is_dir() and _NAME.match(p.name)):
        coldkey = _coldkey_address(keys.wallet(wdir.name, path=path))
        hotkey_dir = wdir / "hotkeys"
        names = sorted({f.name.removesuffix("pub.txt") for f in hotkey_dir.iterdir() if f.is_file()}
                       if hotkey_dir.is_dir() else set())
        hotkeys = [{"name": h, "address": _hotkey_address(keys.wallet(wdir.name, h, path))}
                   for h in names if _NAME.match(h)]
        found.append({"name": wdir.name, "coldkey": coldkey, "hotkeys": hotkeys})
    return found


def list_wallets(args: argparse.Namespace) -> int:
    path = Path(args.wallet_path).expanduser()
    wallets = scan_wallets(path)
    if args.json:
        output.print_json({"path": str(path), "wallets": wallets})
        return 0
    if not wallets:
        output.note(f"no wallets under {path}: create one with `agora wallet new-coldkey --wallet.name NAME`")
        return 0
    rows = []
    for w in wallets:
        rows.append([w["name"], "coldkey", w["coldkey"] or "(no coldkeypub.txt)"])
        rows += [["", f"hotkey {h['name']}", h["address"] or "(unreadable)"] for h in w["hotkeys"]]
    output.print_table(["WALLET", "KEY", "ADDRESS"], rows)
    return 0


def _dev_name(name: str) -> str:
    """'alice' -> 'Alice': one of the pre-funded dev accounts, case-insensitively."""
    for known in keys.DEV_ACCOUNTS:
        if known.lower() == name.lower():
            return known
    raise InvalidRequest(f"no dev account {name!r}: choose one of {', '.join(keys.DEV_ACCOUNTS)}")


def _dev_keypair(name: str) -> Keypair:
    return keys.dev_keypair(_dev_name(name))


def _unlock(w: Wallet) -> Keypair:
    password = None
    if w.coldkey_file.exists_on_device() and w.coldkey_file.is_encrypted():
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = _read_secret(f"password for the coldkey of wallet {w.name!r}: ")
    return keys.unlock_coldkey(w, password)


# ---- on the chain ----

def balance(args: argparse.Namespace) -> int:
    if args.all:
        targets = [(w["name"], w["coldkey"]) for w in scan_wallets(Path(args.wallet_path).expanduser())
                   if w["coldkey"]]
    elif args.wallet_name:
        targets = [(args.wallet_name, keys.coldkey_address(_open_wallet(args)))]
    elif args.dev:
        targets = [(f"//{_dev_name(args.dev)}", _dev_keypair(args.dev).ss58_address)]
    else:
        targets = [(None, keys.check_address(args.address))]
    accounts = asyncio.run(_accounts(args.chain, [address for _, address in targets]))
    rows = [{"wallet": label, "address": a.address, "free_rao": a.free, "free_tao": output.tao_plain(a.free),
             "nonce": a.nonce} for (label, _), a in zip(targets, accounts, strict=True)]
    total = sum(a.free for a in accounts)
    if args.json:
        output.print_json({"accounts": rows, "total_rao": total, "total_tao": output.tao_plain(total)})
        return 0
    if not rows:
        output.note(f"no wallets with a coldkey under {args.wallet_path}")
        return 0
    table = [[r["wallet"] or "-", r["address"], output.tao(r["free_rao"]), r["nonce"]] for r in rows]
    if len(rows) > 1:
        table.append(["total", "", output.tao(total), ""])
    output.print_table(["WALLET", "ADDRESS", "FREE (TAO)", "NONCE"], table, right=(2, 3))
    return 0


async def _accounts(target: str, addresses: list[str]) -> list:
    from services.chain.client import ChainClient

    async with ChainClient(target) as client:
        return list(await asyncio.gather(*(client.account(a) for a in addresses)))


def transfer(args: argparse.Namespace) -> int:
    # Everything that can be checked offline is checked before a password is asked for.
    amount = check_amount(parse_tao(args.amount), what="amount")
    dest = keys.check_address(args.dest, what="destination")
    keypair = _dev_keypair(args.dev) if args.dev else _unlock(_open_wallet(args))
    resp = asyncio.run(_transfer(args.chain, keypair, dest, amount, wait=not args.no_wait))
    st = resp.status
    result = {"from": keypair.ss58_address, "to": dest, "amount_rao": amount,
              "amount_tao": output.tao_plain(amount), "hash": "0x" + resp.hash.hex()}
    if args.no_wait:
        result["state"] = "QUEUED"
        _show_transfer(args, result)
        return 0
    result |= {"state": type(st).State.Name(st.state), "block": st.block_number, "index": st.index,
               "success": st.success, "error": st.error, "fee_rao": st.fee,
               "fee_tao": output.tao_plain(st.fee)}
    _show_transfer(args, result)
    _check_outcome(result)
    return 0


def _show_transfer(args: argparse.Namespace, result: dict) -> None:
    if args.json:
        output.print_json(result)
        return
    fields = [("transfer", f"{output.tao(result['amount_rao'])} TAO"), ("from", result["from"]),
              ("to", result["to"]), ("hash", result["hash"])]
    if result["state"] == "INCLUDED":
        fields += [("block", f"{result['block']} (index {result['index']})"),
                   ("result", "success" if result["success"] else f"FAILED: {result['error']}"),
                   ("fee", f"{output.tao(result['fee_rao'])} TAO")]
    else:
        fields.append(("state", result["state"]))
    output.print_fields(fields)


def _check_outcome(result: dict) -> None:
    """After waiting for inclusion: anything but a successful inclusion is a failure (exit 1)."""
    state = result["state"]
    if state == "QUEUED":
        raise CommandFailed("DEADLINE_EXCEEDED", f"extrinsic {result['hash']} is still queued; it may yet be "
                            "included: check the balance before sending it again")
    if state == "DROPPED":
        raise CommandFailed("FAILED_PRECONDITION", "dropped when its block was built: the nonce was stale "
                            "or the fee could not be paid")
    if state != "INCLUDED":
        raise CommandFailed("UNKNOWN", f"extrinsic {result['hash']} is in state {state}")
    if not result["success"]:
        raise CommandFailed("FAILED_PRECONDITION", f"transfer failed in block {result['block']}: "
                            f"{result['error']} (the fee was paid)")


async def _transfer(target: str, keypair: Keypair, dest: str, amount: int, *, wait: bool):
    from services.chain.client import ChainClient, transfer_call

    async with ChainClient(target) as client:
        xt = await client.sign(keypair, transfer_call(dest, amount))
        # the server waits up to 10 blocks, within this call's deadline
        return await client.submit(xt, wait=wait)
