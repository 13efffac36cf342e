"""Wallet files for `make run`'s dev keys, so miners and validators start with a user's own flags
(`--wallet.name eve --wallet.hotkey text-gemma3 --wallet.path .run/wallets`).

Only public coldkeys (coldkeypub.txt) and hotkeys are written: dev coldkeys sign from //Name and
never touch disk. Hotkeys are unencrypted, as btcli writes them. The paying user's coldkey is a
real encrypted one, created once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bittensor_wallet import Keypair

from services.common import keys


def wallet_name(coldkey: str) -> str:
    return coldkey.lower()


def write_dev_wallet(path: Path, coldkey: str, hotkeys: list[str]) -> None:
    """coldkeypub of //coldkey and the hotkeys //coldkey//h, each written once (idempotent)."""
    name = wallet_name(coldkey)
    w = keys.wallet(name, path=path)
    if not w.coldkeypub_file.exists_on_device():
        w.set_coldkeypub(keys.dev_keypair(coldkey), overwrite=True)
    for hotkey in hotkeys:
        hw = keys.wallet(name, hotkey, path=path)
        if not hw.hotkey_file.exists_on_device():
            hw.set_hotkey(Keypair.create_from_uri(f"//{coldkey}//{hotkey}"), encrypt=False, overwrite=True)


def ensure_user_wallet(path: Path, name: str, password: str) -> Keypair:
    """Create the user's coldkey once (encrypted like any coldkey, with the CLI) and unlock it."""
    w = keys.wallet(name, path=path)
    if not w.coldkey_file.exists_on_device():
        env = {**os.environ, "AGORA_COLDKEY_PASSWORD": password}
        out = subprocess.run([sys.executable, "-m", "services.cli.main", "wallet", "new-coldkey", "--wallet.name",
                              name, "--wallet.path", str(path), "--n-words", "12", "--json"],
                             capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"creating wallet {name} failed: {out.stderr.strip()}")
    return keys.unlock_coldkey(w, password)
