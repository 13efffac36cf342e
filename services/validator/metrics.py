"""The validator's Prometheus metrics (agora_validator_*), named by CONVENTIONS.md section 1.

Labels are bounded: netuid, uid (at most the subnet's max_allowed_uids), result (a handful of words).
Never a user's or miner's address.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

round_duration_seconds = Histogram(
    "agora_validator_round_duration_seconds", "One scoring round: sampling, asking every miner, scoring",
    ["netuid"], buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
)
miner_results = Counter(
    "agora_validator_miner_results", "Miners' results in rounds: answered, failed or timeout", ["netuid", "result"]
)
score = Gauge("agora_validator_score", "Each miner's score (0-1) from the validator's moving average of its rounds",
              ["netuid", "uid"])
weights_set = Counter(
    "agora_validator_weights_set", "set_weights attempts by result (ok, refused, failed, outdated, ...)",
    ["netuid", "result"],
)
last_weights_timestamp_seconds = Gauge(
    "agora_validator_last_weights_timestamp_seconds", "Unix time of the last weights the chain accepted", ["netuid"]
)
queries = Counter(
    "agora_validator_queries", "Users' queries by result (ok, unpaid, refused, no_miner, failed, invalid)",
    ["netuid", "result"],
)
query_seconds = Histogram(
    "agora_validator_query_seconds", "A user's query end to end, payment included", ["netuid"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
fees_earned_rao = Counter("agora_validator_fees_earned_rao", "Rao users paid for queries", ["netuid"])
