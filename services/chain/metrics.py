"""The chain's Prometheus metrics (agora_chain_*), named by Prometheus' conventions."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from agora.chain.v1 import chain_pb2
from services.chain.extrinsics import CheckedExtrinsic
from services.chain.ledger import ApplyResult

block_height = Gauge("agora_chain_block_height", "Number of the last finalized block")
block_timestamp = Gauge("agora_chain_last_block_timestamp_seconds", "Unix time of the last finalized block")
producer_active = Gauge("agora_chain_producer_active", "1 while this process holds the block-production lease")
extrinsics = Counter(
    "agora_chain_extrinsics", "Extrinsics applied or dropped by this producer", ["call", "result"]
)
submitted = Counter("agora_chain_submitted_extrinsics", "Extrinsics offered to this process", ["result"])
block_seconds = Histogram(
    "agora_chain_block_production_seconds", "Time to apply and seal one block",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
block_extrinsics = Histogram(
    "agora_chain_block_extrinsics", "Extrinsics included per block",
    buckets=(0, 1, 10, 100, 500, 1000, 2500, 5000, 10000),
)
block_bytes = Histogram(
    "agora_chain_block_size_bytes", "Encoded size of each block (GetBlock's response)",
    buckets=(1024, 16384, 65536, 262144, 1048576, 2097152, 3145728, 4194304),
)
epoch_seconds = Histogram(
    "agora_chain_epoch_duration_seconds", "Time to run one subnet's epoch (read, Yuma, pay)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
emission = Counter("agora_chain_emission_rao", "Rao minted into each subnet's pending emission", ["netuid"])
pool_size = Gauge("agora_chain_pool_extrinsics", "Extrinsics waiting for a block")
total_issuance = Gauge("agora_chain_total_issuance_rao", "Total issuance in rao")


def observe_block(
    block: chain_pb2.Block, xts: list[CheckedExtrinsic], results: list[ApplyResult], seconds: float, size: int
) -> None:
    block_height.set(block.header.number)
    block_timestamp.set(block.header.timestamp_ms / 1000)
    block_seconds.observe(seconds)
    block_extrinsics.observe(len(block.extrinsics))
    block_bytes.observe(size)
    for xt, r in zip(xts, results, strict=True):
        extrinsics.labels(xt.call_name, "success" if r.ok else "failed" if r.applied else "dropped").inc()
