"""Shared fixtures: a real redis-server this session starts on a free port, and chain nodes on it.

Each test gets its own network name, so its keys live under their own prefix: nothing is flushed
and no test sees another's state.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.chain.client import ChainClient
from services.chain.main import ChainNode
from services.chain.settings import ChainSettings, dev_balances
from services.common.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=Path(tmp_path_factory.mktemp("redis")), appendonly=False).start()
    yield server
    server.stop()


def chain_settings(redis_server: RedisServer, **overrides: object) -> ChainSettings:
    base: dict = dict(
        redis_url=redis_server.url, network=f"test-{uuid.uuid4().hex[:8]}", port=0, metrics_port=0,
        block_time_ms=100, genesis_balances=dev_balances(),
    )
    base.update(overrides)
    return ChainSettings(**base)


@pytest.fixture
async def chain(redis_server: RedisServer) -> AsyncIterator[ChainNode]:
    node = ChainNode(chain_settings(redis_server))
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def client(chain: ChainNode) -> AsyncIterator[ChainClient]:
    c = ChainClient(f"127.0.0.1:{chain.server.port}")
    yield c
    await c.close()


# Real models for the slow suites, loaded once per session (the first use pays a few seconds) and
# shared: a Miner only reads its model. One torch thread each: two cores serve up to three at once.

@pytest.fixture(scope="session")
def smol():
    from services.miner.model import LoadOptions, load_model

    return load_model("smollm2-135m", LoadOptions(threads=1))


@pytest.fixture(scope="session")
def gemma():
    from services.miner.model import LoadOptions, load_model

    return load_model("gemma3-270m", LoadOptions(threads=1))


@pytest.fixture(scope="session")
def minilm():
    from services.miner.model import LoadOptions, load_model

    return load_model("minilm-l6", LoadOptions(threads=1))


# Files that load real models into the test process (4-5 GB): make test runs them in a second pass,
# so none of them runs beside the make-run test, whose dozen model processes peak near 18 GiB.
MODEL_FILES = ("test_validator_ladder.py", "test_validator_ensemble.py", "test_validator_proper.py",
               "test_validator_copier.py", "test_validator_consensus.py", "test_validator_gaming.py",
               "test_miner_models.py")
# the longest files of each pass, longest first (two workers, the 2-core reference machine)
HEAVIEST = ("test_make_run.py", "test_validator_ladder.py", "test_validator_ensemble.py",
            "test_validator_proper.py", "test_validator_copier.py", "test_validator_consensus.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the model files; then the heaviest files first, then the other slow ones: with workers,
    the longest jobs start at once and the short ones fill in around them, instead of one long file
    starting last and running alone (xdist's loadfile hands files out in this order)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    for item in items:
        if item.path.name in MODEL_FILES:
            item.add_marker(pytest.mark.models)

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        return (HEAVIEST.index(name) if name in HEAVIEST else len(HEAVIEST), item.path not in slow_files)

    items.sort(key=rank)   # stable: file order kept otherwise
