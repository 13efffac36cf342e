"""Wiring of a validator process: hotkey and coldkey address, the chain, the held-out data, the
scoring loop, the paid query desk and the gRPC server.

    await run_validator(ValidatorSettings(netuid=1, wallet_name="validator"))

Only the hotkey is loaded (it signs miner requests, weights and the axon); of the coldkey only the
public address is read, as the account users pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from bittensor_wallet import Keypair
from grpc import aio

from services.chain.client import ChainClient, serve_axon_call
from services.chain.subnets import TASK_BY_ENUM
from services.common import keys
from services.common.errors import InvalidRequest
from services.common.grpc_server import AgoraServer
from services.validator.datasets import TaskData, load_task_data
from services.validator.items import Task
from services.validator.loop import ValidatorLoop
from services.validator.miners import MinerPool
from services.validator.payments import Cashier
from services.validator.queries import QueryDesk
from services.validator.router import Router
from services.validator.server import SERVICE, SERVICE_DESCRIPTOR, ValidatorService, add_to_server
from services.validator.settings import VALIDATOR_PROTOCOL, ValidatorSettings
from services.validator.store import EmaStore, open_store

__all__ = ["Validator", "ValidatorSettings", "run_validator"]

log = logging.getLogger("agora.validator")


class Validator:
    """One validator process. `hotkey`, `coldkey`, `data` and `store` replace what the settings would
    load (tests pass dev keys and a small data set)."""

    def __init__(self, settings: ValidatorSettings, *, hotkey: Keypair | None = None, coldkey: str | None = None,
                 data: TaskData | None = None, store: EmaStore | None = None) -> None:
        self.settings = settings
        if hotkey is None or coldkey is None:
            wallet = keys.wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
            hotkey = hotkey or keys.hotkey_keypair(wallet)
            coldkey = coldkey or keys.coldkey_address(wallet)
        self.hotkey = hotkey
        self.coldkey = coldkey
        self.chain = ChainClient(settings.chain)
        self.pool = MinerPool(hotkey)
        self.server = AgoraServer(name="validator", host=settings.host, port=settings.port,
                                  metrics_port=settings.metrics_port)
        self._data = data
        self._store = store
        self.loop: ValidatorLoop | None = None
        self.desk: QueryDesk | None = None
        self._running: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        """Read the chain and the subnet, load the data, serve, publish the axon, start the rounds."""
        s = self.settings
        chain_id = await self.chain.chain_id()
        subnet = await self.chain.subnet(s.netuid)
        task = TASK_BY_ENUM.get(subnet.task)
        if task is None:
            raise InvalidRequest(f"subnet {s.netuid} has no task a validator can score")
        data = self._data or await asyncio.to_thread(load_task_data, task, s.data, seed=s.data_seed)
        if data.task is not Task(task):
            raise InvalidRequest(f"the data is for {data.task}, subnet {s.netuid} does {task}")
        self.loop = ValidatorLoop(
            settings=s, hotkey=self.hotkey, chain=self.chain, data=data, pool=self.pool,
            seed=s.seed if s.seed is not None else secrets.randbits(64),
            store=self._store or open_store(s.redis_url, self.hotkey.ss58_address, s.netuid),
        )
        await self.loop.start()
        router = Router(self.loop, self.pool, attempt_timeout_s=s.attempt_timeout_s, max_attempts=s.max_attempts)
        cashier = Cashier(self.chain, payee=self.coldkey, fee_rao=s.fee_rao, chain_id=chain_id)
        self.desk = QueryDesk(netuid=s.netuid, task=task, cashier=cashier, router=router, timeout_s=s.query_timeout_s)
        service = ValidatorService(loop=self.loop, desk=self.desk, coldkey=self.coldkey, chain_id=chain_id,
                                   version=self.server.version)
        self.server.add_service(add_to_server, service, SERVICE_DESCRIPTOR)
        await self.server.start()
        if s.serve_axon:
            await self._serve_axon()
        self._running = asyncio.get_running_loop().create_task(self.loop.run(), name="validator-loop")
        await self.server.set_serving(SERVICE, True)
        log.info("validator %s on subnet %d (%s) serving on %s:%d, fee %d rao to %s", self.hotkey.ss58_address,
                 s.netuid, task, s.host, self.port, s.fee_rao, self.coldkey)

    async def _serve_axon(self) -> None:
        """Publish this endpoint (protocol VALIDATOR_PROTOCOL) so users find it; not waited for."""
        assert self.loop is not None and self.loop.view is not None
        me = self.loop.view.neuron(self.hotkey.ss58_address)
        host, port = self.settings.advertised_host, self.port
        if me is None:
            log.warning("hotkey %s is not registered on subnet %d: not publishing an endpoint, setting no weights",
                        self.hotkey.ss58_address, self.settings.netuid)
            return
        if me.axon is not None and (me.axon.host, me.axon.port, me.protocol) == (host, port, VALIDATOR_PROTOCOL):
            return
        call = serve_axon_call(self.settings.netuid, host, port, VALIDATOR_PROTOCOL, self.settings.version_key)
        try:
            await self.chain.call(self.hotkey, call, wait=False)
        except aio.AioRpcError as exc:
            log.warning("serve_axon refused (%s: %s); users must name this validator with --validator",
                        exc.code().name, exc.details())

    async def serve_until_signalled(self) -> None:
        if self._running is None:
            raise RuntimeError("serve_until_signalled() before start()")
        stopped = asyncio.ensure_future(self.server.wait_for_termination())
        await asyncio.wait({stopped, self._running}, return_when=asyncio.FIRST_COMPLETED)
        if self._running.done() and not self._running.cancelled() and self._running.exception() is not None:
            stopped.cancel()
            raise self._running.exception()  # type: ignore[misc]
        await stopped

    async def stop(self) -> None:
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running
        await self.server.stop()
        await self.pool.close()
        if self.loop is not None:
            await self.loop.store.close()
        await self.chain.close()


async def run_validator(settings: ValidatorSettings) -> None:
    """Run until SIGTERM/SIGINT."""
    validator = Validator(settings)
    try:
        await validator.start()
        await validator.serve_until_signalled()
    finally:
        await validator.stop()
