"""The validator's work: scoring rounds over every serving miner at once, a moving average per uid,
and weights on the chain once per tempo.

A round: read the metagraph, sample one challenge from the held-out data, send it to every miner's
axon concurrently with one deadline, score each answer (an error, a timeout or a malformed answer
scores 0), normalise the round into shares and fold them into the EMA. A round without a single
answer is a round of zeros, never a crash. Weights follow the block stream: when the subnet's rate
limit and tempo allow, the EMA becomes a u16 row within the subnet's limits (version key, minimum
number of weights, largest share) and goes to the chain signed by the validator's hotkey. On a
subnet with commit-reveal the row is committed as a hash instead, and revealed in its window
(services/validator/commit_reveal.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from bittensor_wallet import Keypair
from grpc import aio

from agora.chain.v1 import chain_pb2
from services.chain.client import ChainClient, commit_weights_call, reveal_weights_call, set_weights_call
from services.validator import metrics
from services.validator.challenges import Challenge, make_challenge
from services.validator.commit_reveal import PendingCommit, new_commit, sort_commits
from services.validator.datasets import TaskData
from services.validator.ema import EmaState, cap_max_share, weights_from_ema
from services.validator.miners import MinerPool
from services.validator.sampling import round_rng
from services.validator.scoring import RoundScore, normalize_scores, powered_score, round_level, score_of_level
from services.validator.settings import ValidatorSettings
from services.validator.store import EmaStore, MemoryStore
from services.validator.subnet import Endpoint, SubnetView, read_subnet

log = logging.getLogger("agora.validator")

ANSWERED, FAILED, TIMEOUT = "answered", "failed", "timeout"
DOWN_SECONDS = 30.0        # a miner that failed a user's query is tried last for this long
TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
RETRY_BLOCKS = 5           # after refused or failed weights, wait this many blocks before trying again


@dataclass(frozen=True, slots=True)
class MinerOutcome:
    uid: int
    hotkey: str
    result: str           # answered | failed | timeout
    score: RoundScore     # 0 unless answered well
    seconds: float
    error: str = ""


@dataclass(frozen=True, slots=True)
class RoundResult:
    index: int
    block: int
    seconds: float
    outcomes: tuple[MinerOutcome, ...]
    shares: dict[int, float]   # uid -> normalised share of this round


@dataclass(frozen=True, slots=True)
class WeightsSet:
    block: int
    weights: dict[int, int]    # uid -> u16 as sent


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of a weights extrinsic the validator sent."""

    block: int | None     # its block, if it was included and succeeded
    result: str           # "ok" | "refused" (at submit) | "failed" (in its block, or not included)
    why: str
    retry: bool           # the chain may still take it: it was busy, or the extrinsic is still queued


@dataclass(slots=True)
class MinerRecord:
    """What the validator saw of one uid's current hotkey; forgotten when the uid changes hands."""

    hotkey: str
    endpoint: str = ""
    last_score: float = 0.0
    last_metric: float = 0.0
    answered: int = 0
    failed: int = 0
    timeouts: int = 0
    last_result: str = ""      # of the last round that asked it (answered | failed | timeout); "": not asked yet
    down_until: float = 0.0    # monotonic time; a miner that failed a query is tried last until then


@dataclass
class ValidatorLoop:
    settings: ValidatorSettings
    hotkey: Keypair
    chain: ChainClient
    data: TaskData
    pool: MinerPool
    seed: int
    store: EmaStore = field(default_factory=MemoryStore)
    clock: Callable[[], float] = time.monotonic

    view: SubnetView | None = field(default=None, init=False)
    ema: EmaState = field(init=False)
    records: dict[int, MinerRecord] = field(default_factory=dict, init=False)
    rounds: int = field(default=0, init=False)
    head: int = field(default=0, init=False)
    last_round: RoundResult | None = field(default=None, init=False)
    last_weights: WeightsSet | None = field(default=None, init=False)
    pending_commits: list[PendingCommit] = field(default_factory=list, init=False)
    _rounds_since_weights: int = field(default=0, init=False)
    _weights_retry_at: int = field(default=0, init=False)
    _last_weights_problem: tuple[str, str] | None = field(default=None, init=False)
    _new_block: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self.ema = EmaState.new(self.settings.alpha)

    @property
    def netuid(self) -> int:
        return self.settings.netuid

    async def start(self) -> None:
        """Resume a saved moving average and read the subnet once."""
        saved = await self.store.load()
        if saved is not None:
            self.ema = EmaState(self.settings.alpha, saved.values, saved.hotkeys)
            log.info("resumed the moving average of %d uids", len(saved.values))
        view = await self.refresh()
        saved_commits = await self.store.load_commits()
        if saved_commits:
            ready, gone, waiting = sort_commits(saved_commits, view, self.hotkey.ss58_address, view.block + 1)
            self.pending_commits = sorted([*ready, *waiting], key=lambda c: c.commit_block)
            await self.store.save_commits(self.pending_commits)
            log.info("resumed %d weight commits to reveal (%d expired or revealed already)",
                     len(self.pending_commits), len(gone))

    async def refresh(self) -> SubnetView:
        view = await read_subnet(self.chain, self.netuid)
        self.view = view
        self.head = max(self.head, view.block)
        for uid, hotkey in view.hotkeys().items():
            record = self.records.get(uid)
            if record is None or record.hotkey != hotkey:
                self.records[uid] = MinerRecord(hotkey)
        for uid in [u for u in self.records if u >= view.n]:
            del self.records[uid]
        return view

    # ---- rounds ----

    async def run_round(self) -> RoundResult:
        """One round over every serving miner; the EMA and the metrics take it in."""
        started = time.perf_counter()
        try:
            view = await self.refresh()
        except aio.AioRpcError as exc:
            if self.view is None:
                raise
            log.warning("metagraph read failed (%s); this round uses the last one", exc.code().name)
            view = self.view
        endpoints = view.miners(self.hotkey.ss58_address)
        await self.pool.keep(endpoints)
        index = self.rounds
        rng = round_rng(self.seed, index, self.data.task)
        challenge = make_challenge(self.data, rng, items=self.settings.round_items, top_k=self.settings.top_k)
        asked = await asyncio.gather(*(self._ask(challenge, e) for e in endpoints))
        outcomes = await asyncio.to_thread(_score_all, challenge, asked)
        shares = normalize_scores({o.uid: o.score.score for o in outcomes}, self.settings.score_power)
        miners = {n.uid: n.hotkey for n in view.neurons
                  if not n.is_validator_endpoint and n.hotkey != self.hotkey.ss58_address}
        # The average keeps each round's absolute level (scoring.round_level), turned into weights only
        # when weights are set: a round's shares would hand a lone noise miner all of a round that the
        # real miners missed, and per-round scores of a few items average badly.
        levels = {o.uid: round_level(self.data.task, o.score) for o in outcomes}
        self.ema = self.ema.update(levels, miners)
        await self.store.save(self.ema)
        seconds = time.perf_counter() - started
        result = RoundResult(index, view.block, seconds, tuple(outcomes), shares)
        self._record(result, endpoints)
        self.rounds += 1
        self._rounds_since_weights += 1
        self.last_round = result
        log.info("round %d at block %d: %d miners, %d answered, %.2fs", index, view.block, len(outcomes),
                 sum(o.result == ANSWERED for o in outcomes), seconds)
        return result

    async def _ask(self, challenge: Challenge, endpoint: Endpoint) -> tuple[Endpoint, str, object, float, str]:
        timeout = self.settings.timeout_s
        client = self.pool.client(endpoint)
        started = time.perf_counter()
        try:
            # the gRPC deadline ends the call; wait_for is the backstop if a channel never gives up
            answer = await asyncio.wait_for(challenge.ask(client, timeout), timeout + 1.0)
            return endpoint, ANSWERED, answer, time.perf_counter() - started, ""
        except aio.AioRpcError as exc:
            kind = TIMEOUT if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED else FAILED
            return endpoint, kind, None, time.perf_counter() - started, f"{exc.code().name}: {exc.details()}"
        except TimeoutError:
            return endpoint, TIMEOUT, None, time.perf_counter() - started, "no answer in time"
        except Exception as exc:   # a bad signature, a broken channel: this miner scores 0, the round goes on
            return endpoint, FAILED, None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"

    def _record(self, result: RoundResult, endpoints: list[Endpoint]) -> None:
        netuid = str(self.netuid)
        metrics.round_duration_seconds.labels(netuid).observe(result.seconds)
        by_uid = {e.uid: e for e in endpoints}
        for o in result.outcomes:
            metrics.miner_results.labels(netuid, o.result).inc()
            record = self.records.setdefault(o.uid, MinerRecord(o.hotkey))
            record.endpoint = by_uid[o.uid].target
            record.last_score, record.last_metric = o.score.score, o.score.metric
            record.last_result = o.result
            if o.result == ANSWERED:
                record.answered += 1
                record.down_until = 0.0
            elif o.result == TIMEOUT:
                record.timeouts += 1
            else:
                record.failed += 1
        for uid in self.ema.values:
            metrics.score.labels(netuid, str(uid)).set(self.average_score(uid))

    # ---- weights ----

    async def maybe_set_weights(self) -> str | None:
        """Set weights if a round has been scored since the last ones and the chain's rate limit and
        the tempo allow it now; returns the result ("ok", "refused", ...) or None if not due. With
        commit-reveal: first reveal a commit whose window has come ("revealed"), then commit the
        row when due ("committed")."""
        revealed = await self._maybe_reveal()
        if self._rounds_since_weights == 0 or self.head + 1 < self._weights_retry_at:
            return revealed
        if self.view is not None and self.head + 1 < self._due(self.view):
            return revealed   # not due by the last metagraph read: no need to read it again each block
        view = await self.refresh()
        me = view.neuron(self.hotkey.ss58_address)
        if me is None:
            return self._weights_result("not_registered", view, f"hotkey {self.hotkey.ss58_address} is not "
                                        f"registered on subnet {self.netuid}")
        if view.block + 1 < self._due(view):   # the extrinsic lands in the next block
            return None
        if self.settings.version_key < view.weights_version:
            return self._weights_result("outdated", view, f"version_key {self.settings.version_key} is below "
                                        f"the subnet's weights_version {view.weights_version}: upgrade")
        values = {uid: self.weight_score(uid) for uid in view.hotkeys()}
        if not any(v > 0 for v in values.values()):
            return self._weights_result("no_scores", view, "no miner has scored yet")
        uids, weights = weights_from_ema(values, max_weights=view.n, min_weights=min(view.min_allowed_weights, view.n))
        weights = cap_max_share(weights, view.max_weights_limit)
        if view.commit_reveal:
            return await self._commit(view, uids, weights)
        sent = await self._send(set_weights_call(self.netuid, uids, weights, self.settings.version_key))
        if sent.block is None:
            return self._weights_result(sent.result, view, sent.why)
        self._weights_live(sent.block, uids, weights)
        self._last_weights_problem = None
        self._rounds_since_weights = 0
        log.info("weights set in block %d on %d uids", sent.block, len(uids))
        return "ok"

    async def _send(self, call: chain_pb2.Call) -> Sent:
        """Sign a weights call with the hotkey and wait for its block."""
        try:
            status = (await self.chain.call(self.hotkey, call, wait=True)).status
        except aio.AioRpcError as exc:
            return Sent(None, "refused", f"{exc.code().name}: {exc.details()}", exc.code() in TRANSIENT)
        if status.state == chain_pb2.ExtrinsicStatus.INCLUDED and status.success:
            return Sent(status.block_number, "ok", "", False)
        state = chain_pb2.ExtrinsicStatus.State.Name(status.state)
        return Sent(None, "failed", f"{state} {status.error}", status.state == chain_pb2.ExtrinsicStatus.QUEUED)

    def _weights_live(self, block: int, uids: Sequence[int], weights: Sequence[int]) -> None:
        """A row became this validator's weights on the chain in `block` (set, or revealed)."""
        self.last_weights = WeightsSet(block, dict(zip(uids, weights, strict=True)))
        metrics.weights_set.labels(str(self.netuid), "ok").inc()
        metrics.last_weights_timestamp_seconds.labels(str(self.netuid)).set(time.time())

    async def _commit(self, view: SubnetView, uids: list[int], weights: list[int]) -> str:
        pending = new_commit(bytes(self.hotkey.public_key), self.netuid, uids, weights, self.settings.version_key)
        # saved before it is sent: a validator restarted after the commit landed still has its salt
        self.pending_commits.append(pending)
        await self.store.save_commits(self.pending_commits)
        sent = await self._send(commit_weights_call(self.netuid, pending.hash))
        self.pending_commits.remove(pending)
        if sent.block is not None:
            self.pending_commits.append(pending.landed(sent.block))
        await self.store.save_commits(self.pending_commits)
        if sent.block is None:
            return self._weights_result(sent.result, view, sent.why)
        self._last_weights_problem = None
        self._rounds_since_weights = 0
        metrics.weights_set.labels(str(self.netuid), "committed").inc()
        first, last = self.pending_commits[-1].window(view)
        log.info("weights committed in block %d on %d uids; reveal in blocks %d..%d", sent.block, len(uids),
                 first, last)
        return "committed"

    async def _maybe_reveal(self) -> str | None:
        """Reveal each pending commit whose window holds the next block; forget expired ones."""
        if not self.pending_commits or self.view is None:
            return None
        if all(self.head + 1 < c.window(self.view)[0] for c in self.pending_commits):
            return None   # by block arithmetic alone: nothing to read from the chain yet
        view = await self.refresh()
        ready, gone, waiting = sort_commits(self.pending_commits, view, self.hotkey.ss58_address, view.block + 1)
        for c in gone:
            log.warning("weights committed in block %d were not revealed in their window: they never counted",
                        c.commit_block)
        result = None
        retry = []   # still in its window after a refusal the chain may not repeat (busy, not yet included)
        for c in ready:
            sent = await self._send(reveal_weights_call(self.netuid, list(c.uids), list(c.weights), list(c.salt),
                                                        c.version_key))
            if sent.block is None:
                log.warning("reveal of the commit of block %d %s: %s", c.commit_block, sent.result, sent.why)
                if sent.retry:
                    retry.append(c)
                continue
            self._weights_live(sent.block, c.uids, c.weights)
            log.info("weights revealed in block %d (committed in block %d)", sent.block, c.commit_block)
            result = "revealed"
        self.pending_commits = sorted([*retry, *waiting], key=lambda c: c.commit_block)
        await self.store.save_commits(self.pending_commits)
        return result

    def _due(self, view: SubnetView) -> int:
        """The first block our weights may land in: the rate limit and the interval (default: a tempo)
        after our last ones."""
        me = view.neuron(self.hotkey.ss58_address)
        if me is None:
            return 0   # unregistered: refresh and say so
        interval = self.settings.weights_interval_blocks or view.tempo
        return me.last_update + max(view.weights_rate_limit, interval)

    def _weights_result(self, result: str, view: SubnetView, why: str) -> str:
        self._weights_retry_at = view.block + RETRY_BLOCKS
        metrics.weights_set.labels(str(self.netuid), result).inc()
        # said once, not at every retry: a validator waiting for its first scores would fill its log
        level = logging.DEBUG if (result, why) == self._last_weights_problem else logging.WARNING
        self._last_weights_problem = (result, why)
        log.log(level, "no weights set on subnet %d (%s): %s", self.netuid, result, why)
        return result

    # ---- running ----

    async def run(self) -> None:
        """Rounds, the block stream and weights, until cancelled."""
        tasks = [asyncio.create_task(self._rounds_forever(), name="validator-rounds"),
                 asyncio.create_task(self._follow_blocks(), name="validator-blocks"),
                 asyncio.create_task(self._weights_forever(), name="validator-weights")]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _rounds_forever(self) -> None:
        while True:
            started = self.clock()
            try:
                await self.run_round()
            except Exception:
                log.exception("round %d failed; the next one starts as planned", self.rounds)
            await asyncio.sleep(max(0.0, self.settings.round_interval_s - (self.clock() - started)))

    async def _follow_blocks(self) -> None:
        backoff = 0.2
        while True:
            try:
                async for block in self.chain.blocks():
                    self.head = max(self.head, block.header.number)
                    self._new_block.set()
                    backoff = 0.2
            except aio.AioRpcError as exc:
                log.warning("block stream lost (%s); reconnecting in %.1fs", exc.code().name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, 5.0)

    async def _weights_forever(self) -> None:
        while True:
            await self._new_block.wait()
            self._new_block.clear()
            try:
                await self.maybe_set_weights()
            except Exception:
                log.exception("setting weights failed; trying again at a later block")
                self._weights_retry_at = self.head + RETRY_BLOCKS

    # ---- what the router and the Scores RPC read ----

    def average_score(self, uid: int) -> float:
        """The score (0-1) of the uid's moving average."""
        return score_of_level(self.data.task, self.ema.values.get(uid, 0.0))

    def weight_score(self, uid: int) -> float:
        """What the uid's average is worth in weights: its score to the settings' power."""
        return powered_score(self.average_score(uid), self.settings.score_power)

    def ranked(self) -> list[Endpoint]:
        """Serving miners, best first: not recently failed, then EMA, then last score, then uid."""
        if self.view is None:
            return []
        now = self.clock()

        def key(e: Endpoint) -> tuple:
            record = self.records.get(e.uid)
            down = record is not None and record.down_until > now
            last = record.last_score if record is not None else 0.0
            return (down, -self.ema.values.get(e.uid, 0.0), -last, e.uid)

        return sorted(self.view.miners(self.hotkey.ss58_address), key=key)

    def serving(self) -> list[Endpoint]:
        """Miners that may answer a user now, by what this validator last saw: not failed or timed out
        in the last round that asked them, nor failed a query in the last DOWN_SECONDS. A miner not
        asked yet may answer: it gets the benefit of the doubt."""
        if self.view is None:
            return []
        now = self.clock()

        def up(e: Endpoint) -> bool:
            record = self.records.get(e.uid)
            if record is None or record.hotkey != e.hotkey:
                return True
            return record.last_result in ("", ANSWERED) and record.down_until <= now

        return [e for e in self.view.miners(self.hotkey.ss58_address) if up(e)]

    def mark_down(self, endpoint: Endpoint) -> None:
        record = self.records.get(endpoint.uid)
        if record is not None and record.hotkey == endpoint.hotkey:
            record.down_until = self.clock() + DOWN_SECONDS


def _score_all(challenge: Challenge, asked: list[tuple[Endpoint, str, object, float, str]]) -> list[MinerOutcome]:
    """Scores of a round's answers (in a worker thread: BLEU over many miners takes a while)."""
    failure = challenge.score(None)   # what no answer earns: score 0 and the task's worst metric
    out = []
    for endpoint, result, answer, seconds, error in asked:
        score = challenge.score(answer) if result == ANSWERED else failure
        out.append(MinerOutcome(endpoint.uid, endpoint.hotkey, result, score, seconds, error))
    return out
