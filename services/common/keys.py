"""Keys, addresses and signatures, on bittensor-wallet so that btcli's keyfiles work unchanged.

A coldkey holds funds and signs transfers and stake; a hotkey identifies a neuron (miner or
validator) and signs its requests. Both are sr25519 keypairs with SS58 addresses (format 42).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from bittensor_wallet import Keypair, Wallet
from bittensor_wallet.utils import is_valid_ss58_address

from services.common.errors import BadSignature, InvalidAddress, InvalidRequest, NotFound, Unauthenticated

SS58_FORMAT = 42
SIGNATURE_BYTES = 64
DEFAULT_WALLET_PATH = Path("~/.bittensor/wallets").expanduser()
# Substrate's dev chains pre-fund these; `make run` and the tests do too.
DEV_ACCOUNTS = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")


def check_address(address: str, *, what: str = "address") -> str:
    """Return the address if it is a valid SS58 sr25519/ed25519 address, else InvalidAddress."""
    if not isinstance(address, str) or not address:
        raise InvalidAddress(f"{what} is empty: need an SS58 address like 5GrwvaEF...")
    if len(address) > 64 or not is_valid_ss58_address(address):
        shown = address if len(address) <= 64 else address[:64] + "..."
        raise InvalidAddress(f"{what} {shown!r} is not a valid SS58 address")
    return address


@lru_cache(maxsize=65536)
def _public_keypair(address: str) -> Keypair:
    # Decoding SS58 costs about as much as a verify: cache one public keypair per signer.
    return Keypair(ss58_address=address)


def public_key(address: str) -> bytes:
    """The 32-byte public key an SS58 address encodes."""
    return bytes(_public_keypair(check_address(address)).public_key)


def verify(address: str, message: bytes, signature: bytes) -> bool:
    """True when signature is address's sr25519 signature over message."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        return bool(_public_keypair(address).verify(message, signature))
    except ValueError:
        return False


def require_signature(address: str, message: bytes, signature: bytes) -> None:
    if len(signature) != SIGNATURE_BYTES:
        raise BadSignature(f"signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
    if not verify(address, message, signature):
        raise BadSignature(f"signature does not match signer {address}")


def dev_keypair(name: str) -> Keypair:
    """//Alice, //Bob, ...: the well-known dev keys of Substrate chains (never for real funds)."""
    return Keypair.create_from_uri(f"//{name}")


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """bittensor-wallet's Rust core prints 'Encrypting...' straight to fd 1; keep --json output clean."""
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def wallet(name: str, hotkey: str = "default", path: Path | str | None = None) -> Wallet:
    return Wallet(name=name, hotkey=hotkey, path=str(Path(path or DEFAULT_WALLET_PATH).expanduser()))


def coldkey_address(w: Wallet) -> str:
    """The coldkey's public address, read from coldkeypub.txt: no password needed."""
    try:
        return w.coldkeypub.ss58_address
    except Exception as exc:  # the Rust core raises its own KeyFileError for a missing file
        raise NotFound(f"wallet {w.name!r} has no coldkey under {w.path}: run `agora wallet new-coldkey`") from exc


def hotkey_keypair(w: Wallet) -> Keypair:
    try:
        return w.hotkey
    except Exception as exc:
        raise NotFound(
            f"wallet {w.name!r} has no hotkey {w.hotkey_str!r} under {w.path}: run `agora wallet new-hotkey`"
        ) from exc


def unlock_coldkey(w: Wallet, password: str | None) -> Keypair:
    """Decrypt the coldkey. The password is never logged or echoed in an error."""
    if not w.coldkey_file.exists_on_device():
        raise NotFound(f"wallet {w.name!r} has no coldkey under {w.path}: run `agora wallet new-coldkey`")
    try:
        with quiet_stdout():
            return w.get_coldkey(password=password)
    except Exception as exc:
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise Unauthenticated(f"wrong password for the coldkey of wallet {w.name!r}") from None
        raise InvalidRequest(f"cannot read the coldkey of wallet {w.name!r}: {type(exc).__name__}") from None
