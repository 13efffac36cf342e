"""Chain nodes as real processes (`agora chain start`, as deployed) and a transfer load whose every
attempt is recorded with the node's answer, for the crash scenarios of tests/chain_crashes.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from bittensor_wallet import Keypair

from services.chain import client as calls
from services.chain.client import ChainClient, sign_extrinsic
from services.chain.codec import extrinsic_hash
from services.common.keys import dev_keypair
from services.common.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
TAO = 10**9
BLOCK_TIME_MS = 100
START_TIMEOUT_S = 60.0
SENDERS = [dev_keypair(name) for name in ("Alice", "Bob", "Charlie", "Dave")]
OWNER, OWNER_HOTKEY = dev_keypair("Ferdie"), dev_keypair("reliability/crash/hotkey")
# codes with which a node refused a submission for certain (its script wrote nothing); any other
# failure (the node died, Redis went away) leaves it unknown whether the extrinsic was queued
REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
           grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE,
           grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED}


@dataclass
class ChainProcess:
    """`chain start --dev` on a Redis and network. Restarting keeps the port; the producer id of
    each run is <hostname>:<pid>."""

    redis_url: str
    network: str
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def holds(self, lease_holder: str) -> bool:
        """Whether this run's producer holds the lease (its token is <producer id>:<random>)."""
        return self.process is not None and lease_holder.startswith(f"{socket.gethostname()}:{self.process.pid}:")

    def start(self, *extra: str) -> ChainProcess:
        """Start `chain start` with this process's settings; `extra`: more of its flags."""
        args = [sys.executable, "-m", "services.cli.main", "chain", "start", "--redis-url", self.redis_url,
                "--network", self.network, "--port", str(self.port), "--metrics-port", "0",
                "--block-time-ms", str(BLOCK_TIME_MS), "--dev", "--min-tempo", "1", *extra]
        with self.log_path.open("a") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            env=os.environ | {"AGORA_LOG_LEVEL": "INFO"})
        return self

    async def wait_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        async with ChainClient(self.target, timeout=1.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"chain exited with {self.process.returncode}: {self.log_tail()}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await client.info()
                    return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"chain did not serve within {timeout}s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no lease handed back, no clean shutdown, whatever it was doing."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass(frozen=True, slots=True)
class Sent:
    hash: bytes
    sender: str
    dest: str
    amount: int
    outcome: str          # "queued" (the node acknowledged it), "refused" (for certain not), "unknown"


class TransferLoad:
    """Each sender sends transfers of unique amounts to its own fresh recipient, one after another,
    through one of the nodes, until stopped; every attempt is recorded with the node's answer."""

    def __init__(self, chain_id: bytes, targets: list[str], *, seed: int, tag: str) -> None:
        self.chain_id = chain_id
        self.targets = targets
        self.rng = random.Random(seed)
        self.recipients = [dev_keypair(f"reliability/{tag}/recipient/{i}") for i in range(len(SENDERS))]
        self.sent: list[Sent] = []
        self.stopping = asyncio.Event()
        self._count = 0

    async def run(self) -> None:
        await asyncio.gather(*(self._sender(k, r) for k, r in zip(SENDERS, self.recipients, strict=True)))

    async def _sender(self, keypair: Keypair, recipient: Keypair) -> None:
        # a channel to a node that died backs off its reconnects for up to minutes: a failed call
        # gets its sender a new channel
        clients = {t: ChainClient(t, timeout=2.0) for t in self.targets}
        try:
            while not self.stopping.is_set():
                target = self.rng.choice(self.targets)
                client = clients[target]
                try:
                    nonce = (await client.account(keypair.ss58_address)).pool_nonce
                except grpc.aio.AioRpcError:
                    await client.close()
                    clients[target] = ChainClient(target, timeout=2.0)
                    await asyncio.sleep(0.05)
                    continue
                self._count += 1
                amount = 1_000_000 + self._count  # unique: a retry never has the hash of an earlier attempt
                xt = sign_extrinsic(keypair, nonce, self.chain_id, calls.transfer_call(recipient.ss58_address, amount))
                try:
                    await client.submit(xt, wait=False)
                    outcome = "queued"
                except grpc.aio.AioRpcError as err:
                    # "already submitted" names this very extrinsic: it exists (applied), not refused
                    known = (err.code() is grpc.StatusCode.ALREADY_EXISTS
                             and "already submitted" in (err.details() or ""))
                    outcome = "refused" if err.code() in REFUSED and not known else "unknown"
                self.sent.append(Sent(extrinsic_hash(xt.payload, xt.signature), keypair.ss58_address,
                                      recipient.ss58_address, amount, outcome))
                await asyncio.sleep(0.05 if outcome != "queued" else self.rng.random() * 0.005)
        finally:
            for c in clients.values():
                await c.close()


async def open_subnet(target: str) -> bytes:
    """A subnet with tempo 1 and a staked uid, so blocks run the coinbase and an epoch every other
    block, and a kill can land in any block step. Returns the chain id."""
    async with ChainClient(target, timeout=10.0) as client:
        hk = OWNER_HOTKEY.ss58_address
        for signer, call in [(OWNER, calls.register_network_call("next-token", "crash", hk)),
                             (OWNER, calls.set_hyperparameter_call(1, "tempo", 1)),
                             (OWNER, calls.set_hyperparameter_call(1, "weights_rate_limit", 0)),
                             (OWNER, calls.burned_register_call(1, hk)),
                             (OWNER, calls.add_stake_call(hk, 100 * TAO)),
                             (OWNER_HOTKEY, calls.set_weights_call(1, [0], [1]))]:
            status = (await client.call(signer, call, wait=True)).status
            assert status.success, status.error
        return await client.chain_id()
