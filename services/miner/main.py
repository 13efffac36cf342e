"""Wiring of a miner process: hotkey, authenticator, model, batcher, the gRPC server and the chain.

    await run_miner(MinerSettings(netuid=1, wallet_name="miner", model="smollm2-135m", chain="host:50051"))

With a chain, `Miner.connect` reads the subnet's task, refuses to go on if the hotkey is not
registered on the subnet (naming the command that registers it), and wires the metagraph cache in
as the permission check; `start()` then publishes the endpoint with serve_axon and follows blocks.
Without one (offline), every correctly signed caller is served.

The server answers health and Info at once; the model loads and warms up on the compute thread
meanwhile, and only then is agora.miner.v1.Miner SERVING (calls before that get UNAVAILABLE). It
is NOT_SERVING again while the hotkey is deregistered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from bittensor_wallet import Keypair

from agora.chain.v1 import chain_pb2
from services.chain.client import ChainClient
from services.common import keys
from services.common.errors import InvalidRequest
from services.common.grpc_server import AgoraServer
from services.miner import auth, metrics
from services.miner.batcher import Batcher
from services.miner.engine import Engine
from services.miner.model import LoadOptions, Model, load_model, set_threads
from services.miner.server import SERVICE, SERVICE_DESCRIPTOR, Limits, MinerService, add_to_server
from services.miner.settings import AUTH_MODES, MinerSettings
from services.miner.subnet import SubnetLink, register_command
from services.miner.tasks import TASK_METHODS, check_model_kind, check_task

__all__ = ["Miner", "MinerSettings", "run_miner"]

log = logging.getLogger("agora.miner")


class Miner:
    """One miner process. `hotkey`, `authenticator`, `stake_of` and `loader` replace what the
    settings would build (tests pass a model loaded once, or a loader that blocks). With a chain,
    build it with `await Miner.connect(settings)` instead."""

    def __init__(
        self,
        settings: MinerSettings,
        *,
        hotkey: Keypair | None = None,
        authenticator: auth.Authenticator | None = None,
        stake_of: auth.StakeOf | None = None,
        loader: Callable[[], Model] | None = None,
        link: SubnetLink | None = None,
    ) -> None:
        check_task(settings.task)
        if settings.auth not in AUTH_MODES:
            raise InvalidRequest(f"auth {settings.auth!r} is not one of {', '.join(AUTH_MODES)}")
        if settings.queue_rows < settings.max_request_items:
            raise InvalidRequest(f"queue_rows {settings.queue_rows} is below max_request_items "
                                 f"{settings.max_request_items}: the largest request could never wait")
        self.settings = settings
        self.hotkey = hotkey or keys.hotkey_keypair(
            keys.wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
        )
        self.authenticator = authenticator or self._authenticator(stake_of)
        self.loader = loader or (lambda: load_model(settings.model_spec, LoadOptions(
            dtype=settings.dtype, threads=settings.threads, degrade=settings.degrade, seed=settings.seed,
            gguf_file=settings.gguf_file, pack=settings.pack_weights,
        )))
        self.methods = TASK_METHODS[settings.task]
        self.engine = Engine(settings.task, self.methods, settings.max_batch)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="miner-compute")
        self.batcher = Batcher(
            self.engine.execute, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
            queue_limit=settings.queue_limit, queue_rows=settings.queue_rows, executor=self.executor,
            on_batch=self._observe_batch, on_depth=metrics.queued_requests.labels(settings.task).set,
        )
        self.server = AgoraServer(name="miner", host=settings.host, port=settings.port,
                                  metrics_port=settings.metrics_port)
        self.service = MinerService(
            task=settings.task, methods=self.methods, model_name=settings.model_spec, netuid=settings.netuid,
            version=self.server.version, keypair=self.hotkey, authenticator=self.authenticator,
            engine=self.engine, batcher=self.batcher, limits=Limits(max_items=settings.max_request_items),
        )
        self.server.add_service(add_to_server, self.service, SERVICE_DESCRIPTOR)
        self.load_seconds: float | None = None
        self._loading: asyncio.Task[None] | None = None
        self.link = link
        self._registered = True
        self._serving = False

    @classmethod
    async def connect(
        cls,
        settings: MinerSettings,
        *,
        hotkey: Keypair | None = None,
        loader: Callable[[], Model] | None = None,
        client: ChainClient | None = None,
    ) -> Miner:
        """A miner of subnet `settings.netuid` on `settings.chain` (or `client`): serves the subnet's
        task (settings.task is replaced), permits its validators (the metagraph cache). Raises
        NotRegistered, with the command to run, if the hotkey holds no uid on the subnet."""
        hotkey = hotkey or keys.hotkey_keypair(
            keys.wallet(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
        )
        link = await SubnetLink.connect(settings, hotkey, client=client)
        try:
            if link.task != settings.task:
                log.info("subnet %d serves %s", settings.netuid, link.task)
            settings = replace(settings, task=link.task)
            return cls(settings, hotkey=hotkey, stake_of=link.metagraph.stake_of, loader=loader, link=link)
        except BaseException:
            await link.close()
            raise

    def _authenticator(self, stake_of: auth.StakeOf | None) -> auth.Authenticator:
        if self.settings.auth == "allow-all":
            log.warning("auth=allow-all: any caller may use this miner (development only)")
            return auth.AllowAll(stake_of)
        if stake_of is None:
            log.warning("no metagraph wired: every correctly signed caller is permitted, with stake 0")
        return auth.SignatureAuthenticator(
            self.hotkey.ss58_address, stake_of,
            max_age_ms=self.settings.max_age_ms, max_future_ms=self.settings.max_future_ms,
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def model_calls(self) -> int:
        return self.engine.calls

    def _observe_batch(self, key: Hashable, rows: int, seconds: float, waits: list[float]) -> None:
        method = key[0]   # type: ignore[index]
        task = self.settings.task
        metrics.batch_size.labels(task, method).observe(rows)
        metrics.inference_seconds.labels(task, self.engine.model_name, method).observe(seconds)
        for wait in waits:
            metrics.queue_wait_seconds.labels(task, method).observe(wait)

    async def start(self) -> None:
        """Serve at once (NOT_SERVING), and load the model in the background."""
        await self.server.start()
        self.batcher.start()
        self._loading = asyncio.get_running_loop().create_task(self._load(), name="miner-load")
        log.info("miner %s (netuid %d, task %s) on %s:%d, loading %s", self.hotkey.ss58_address,
                 self.settings.netuid, self.settings.task, self.settings.host, self.port, self.settings.model_spec)
        if self.link is not None:
            await self.link.publish(self.port, self.server.version)
            self.link.metagraph.on_refresh = self._on_metagraph
            self.link.metagraph.start()

    async def _on_metagraph(self, metagraph: chain_pb2.Metagraph) -> None:
        assert self.link is not None
        registered = self.link.uid is not None
        if registered != self._registered:
            self._registered = registered
            if registered:
                log.info("hotkey %s is registered on subnet %d again (uid %d)", self.hotkey.ss58_address,
                         self.settings.netuid, self.link.uid)
            else:
                log.error("hotkey %s lost its uid on subnet %d (deregistered): NOT_SERVING until it is "
                          "registered again: %s", self.hotkey.ss58_address, self.settings.netuid,
                          register_command(self.settings))
            await self._update_serving()
        if registered:
            self.link.keep_published()

    async def _update_serving(self) -> None:
        serving = self.engine.ready and self._registered
        if serving != self._serving:
            self._serving = serving
            await self.server.set_serving(SERVICE, serving)

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()

        def load_and_warm() -> None:
            set_threads(self.settings.threads)   # torch threads belong to the thread pool that computes
            model = self.loader()
            check_model_kind(self.settings.task, model.kind, model.name)
            self.engine.install(model, warm=self.settings.warm_up)

        await loop.run_in_executor(self.executor, load_and_warm)
        self.load_seconds = time.perf_counter() - started
        labels = (self.settings.task, self.engine.model_name)
        metrics.model_load_seconds.labels(*labels).set(self.load_seconds)
        metrics.model_loaded.labels(*labels).set(1)
        await self._update_serving()
        log.info("model %s ready after %.1fs", self.engine.model_name, self.load_seconds)

    async def ready(self) -> None:
        """Wait until the model is loaded and SERVING; raises what the load raised."""
        if self._loading is None:
            raise RuntimeError("ready() before start()")
        await asyncio.shield(self._loading)

    async def serve_until_signalled(self) -> None:
        """Serve until SIGTERM/SIGINT or `stop()`; a failed model load ends it with the load's error."""
        if self._loading is None:
            raise RuntimeError("serve_until_signalled() before start()")
        stopped = asyncio.ensure_future(self.server.wait_for_termination())
        await asyncio.wait({stopped, self._loading}, return_when=asyncio.FIRST_COMPLETED)
        if self._loading.done() and not self._loading.cancelled() and self._loading.exception() is not None:
            stopped.cancel()
            raise self._loading.exception()  # type: ignore[misc]
        await stopped

    async def stop(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()   # the load itself runs on in its thread until it returns
        if self.link is not None:
            await self.link.close()
        await self.server.stop()
        await self.batcher.stop()
        if self.engine.model is not None:
            metrics.model_loaded.labels(self.settings.task, self.engine.model_name).set(0)
        self.executor.shutdown(wait=False, cancel_futures=True)


async def run_miner(settings: MinerSettings, *, stake_of: auth.StakeOf | None = None) -> None:
    """Run until SIGTERM/SIGINT. With settings.chain, the subnet's metagraph decides who may call;
    offline, `stake_of(hotkey) -> rao | None` does (None: every signed caller). A failed model load
    stops the miner with its error."""
    miner = await Miner.connect(settings) if settings.chain else Miner(settings, stake_of=stake_of)
    try:
        await miner.start()
    except BaseException:
        await miner.stop()
        raise
    try:
        await miner.serve_until_signalled()
    finally:
        await miner.stop()
