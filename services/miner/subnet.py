"""A miner's link to its subnet on the chain: the task, the registration check, the published endpoint.

    link = await SubnetLink.connect(settings, hotkey)   # GetSubnet + GetMetagraph; refuses if unregistered
    link.task                                            # what the subnet's miners serve
    await link.publish(bound_port)                       # serve_axon, unless the chain already has it

The endpoint published with serve_axon is AGORA_AXON_HOST/AGORA_AXON_PORT when set (a Kubernetes
Service name, say), else the listening address; a wildcard listening host (0.0.0.0, ::) becomes
the local address this machine uses to reach the chain, the one address every neuron that reaches
the same chain can be expected to route to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from bittensor_wallet import Keypair

from agora.chain.v1 import chain_pb2
from services.chain.client import ChainClient, serve_axon_call
from services.chain.subnets import TASK_BY_ENUM
from services.common import keys
from services.common.errors import FailedPrecondition, InvalidRequest, NotFound
from services.miner import metrics
from services.miner.metagraph import MetagraphCache
from services.miner.settings import MinerSettings

log = logging.getLogger("agora.miner.subnet")

PROTOCOL = "grpc"
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")
RETRY_BLOCKS = 10          # after a failed serve_axon that names no block to retry at
_RETRY_AT = re.compile(r"at block (\d+)")


class NotRegistered(FailedPrecondition):
    """The miner's hotkey holds no uid on its subnet."""


def register_command(settings: MinerSettings) -> str:
    """The command that registers this miner's hotkey, with --wallet.path and --chain only when the
    command would not find them on its own (default or environment)."""
    parts = ["agora", "subnets", "register", "--netuid", str(settings.netuid),
             "--wallet.name", settings.wallet_name, "--wallet.hotkey", settings.wallet_hotkey]
    if settings.wallet_path:
        usual = Path(os.environ.get("AGORA_WALLET_PATH") or keys.DEFAULT_WALLET_PATH).expanduser()
        if Path(settings.wallet_path).expanduser() != usual:
            parts += ["--wallet.path", settings.wallet_path]
    if settings.chain and settings.chain != (os.environ.get("AGORA_CHAIN") or "127.0.0.1:50051"):
        parts += ["--chain", settings.chain]
    return shlex.join(parts)


def _route_address(target: str) -> str:
    """The local IP this machine uses to reach `target` (HOST:PORT); no packet is sent."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        info = socket.getaddrinfo(host, int(port or 0) or 1, type=socket.SOCK_DGRAM)[0]
        with socket.socket(info[0], socket.SOCK_DGRAM) as s:
            s.connect(info[4])
            return s.getsockname()[0]
    except (OSError, ValueError, IndexError):
        return "127.0.0.1"


def published_endpoint(settings: MinerSettings, bound_port: int) -> tuple[str, int]:
    """(host, port) to publish with serve_axon for a server listening on settings.host:bound_port."""
    host = settings.axon_host or settings.host
    if host in WILDCARD_HOSTS:
        host = _route_address(settings.chain or "127.0.0.1:50051")
    port = settings.axon_port or bound_port
    if not 0 < port < 65536:
        raise InvalidRequest(f"axon port {port} is outside 1..65535")
    if not 0 < len(host) <= 255:
        raise InvalidRequest(f"axon host {host!r} must be 1..255 characters")
    return host, port


def version_number(version: str) -> int:
    """"1.2.3" -> 10203 (serve_axon's version is a number); anything unparsable -> 0."""
    nums = [int(x) for x in re.findall(r"\d+", version)[:3]]
    nums += [0] * (3 - len(nums))
    return nums[0] * 10_000 + nums[1] * 100 + nums[2]


def _same_host(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return a.lower().rstrip(".") == b.lower().rstrip(".")


@dataclass
class SubnetLink:
    """What a running miner holds of the chain: one client (one channel), the metagraph cache and
    the endpoint it keeps published."""

    client: ChainClient
    settings: MinerSettings
    hotkey: Keypair
    task: str
    metagraph: MetagraphCache
    owns_client: bool = True
    endpoint: tuple[str, int] | None = None       # what should be on the chain
    version: int = 0
    _publishing: asyncio.Task[bool] | None = field(default=None, repr=False)
    _retry_at_block: int = 0

    @classmethod
    async def connect(cls, settings: MinerSettings, hotkey: Keypair, *, client: ChainClient | None = None
                      ) -> SubnetLink:
        """Read the subnet's task and metagraph; NotRegistered (with the command to run) if the
        hotkey holds no uid on it."""
        if not settings.chain and client is None:
            raise InvalidRequest("no chain address: give one (--chain, AGORA_CHAIN) or run offline")
        own = client is None
        client = client or ChainClient(settings.chain or "")
        try:
            try:
                info = await client.subnet(settings.netuid)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    raise NotFound(f"subnet {settings.netuid} does not exist on the chain at {client.target} "
                                   "(`agora subnets list` shows the subnets)") from None
                raise
            task = TASK_BY_ENUM.get(info.task)
            if task is None:
                raise FailedPrecondition(f"subnet {settings.netuid} has task {info.task}, which no miner serves")
            cache = MetagraphCache(client, settings.netuid, refresh_blocks=settings.metagraph_refresh_blocks,
                                   always={hotkey.ss58_address: 0})
            await cache.refresh()
            if cache.uid_of(hotkey.ss58_address) is None:
                raise NotRegistered(
                    f"hotkey {hotkey.ss58_address} (wallet {settings.wallet_name!r}, hotkey "
                    f"{settings.wallet_hotkey!r}) is not registered on subnet {settings.netuid}; "
                    f"register it first: {register_command(settings)}"
                )
        except BaseException:
            if own:
                await client.close()
            raise
        return cls(client=client, settings=settings, hotkey=hotkey, task=task, metagraph=cache, owns_client=own)

    @property
    def uid(self) -> int | None:
        return self.metagraph.uid_of(self.hotkey.ss58_address)

    def published(self) -> tuple[str, int] | None:
        """The endpoint the chain holds for this hotkey now (from the cached metagraph)."""
        neuron = self.metagraph.neuron(self.hotkey.ss58_address)
        if neuron is None or not neuron.HasField("axon"):
            return None
        return neuron.axon.host, neuron.axon.port

    def up_to_date(self) -> bool:
        published = self.published()
        return (self.endpoint is not None and published is not None and published[1] == self.endpoint[1]
                and _same_host(published[0], self.endpoint[0]))

    async def publish(self, bound_port: int, version: str = "") -> bool:
        """Publish this miner's endpoint (once per start; afterwards `keep_published` keeps it)."""
        self.endpoint = published_endpoint(self.settings, bound_port)
        self.version = version_number(version)
        return await self._serve()

    def keep_published(self) -> None:
        """After a refresh: serve again if the chain's endpoint differs (re-registered, changed)."""
        if (self.endpoint is None or self.uid is None or self.up_to_date()
                or (self._publishing is not None and not self._publishing.done())
                or self.metagraph.block < self._retry_at_block):
            return
        self._publishing = asyncio.get_running_loop().create_task(self._serve(), name="miner-serve-axon")

    async def _serve(self) -> bool:
        assert self.endpoint is not None
        host, port = self.endpoint
        if self.up_to_date():
            log.info("axon %s:%d is already published for uid %s on subnet %d", host, port, self.uid,
                     self.settings.netuid)
            return True
        call = serve_axon_call(self.settings.netuid, host, port, PROTOCOL, self.version)
        try:
            response = await self.client.call(self.hotkey, call)
            status = response.status
            ok = status.state == chain_pb2.ExtrinsicStatus.INCLUDED and status.success
            error = status.error or chain_pb2.ExtrinsicStatus.State.Name(status.state)
        except grpc.aio.AioRpcError as exc:
            ok, error = False, f"{exc.code().name}: {exc.details()}"
        metrics.axon_served.labels("ok" if ok else "error").inc()
        if ok:
            log.info("published axon %s:%d for uid %s on subnet %d", host, port, self.uid, self.settings.netuid)
            await self.metagraph.refresh()
            return True
        retry = _RETRY_AT.search(error)
        self._retry_at_block = int(retry.group(1)) if retry else self.metagraph.block + RETRY_BLOCKS
        log.warning("serve_axon %s:%d on subnet %d failed (%s); retrying from block %d", host, port,
                    self.settings.netuid, error, self._retry_at_block)
        return False

    async def close(self) -> None:
        await self.metagraph.stop()
        if self._publishing is not None and not self._publishing.done():
            self._publishing.cancel()
        if self.owns_client:
            await self.client.close()
