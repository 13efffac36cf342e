"""The miner's Prometheus metrics (agora_miner_*), named by CONVENTIONS.md section 1.

Labels are bounded: task, method (five names), model (one per process), result (gRPC code names),
reason (a handful). Never a caller's hotkey. Tokens per second is `rate(agora_miner_tokens_total[1m])`;
the gauge beside it holds the last batch's figure for quick looks.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

requests = Counter(
    "agora_miner_requests", "Requests answered, by method and result (gRPC code name)", ["task", "method", "result"]
)
request_seconds = Histogram(
    "agora_miner_request_seconds", "Time from arrival to answer, auth and queueing included",
    ["task", "method"], buckets=_LATENCY,
)
queue_wait_seconds = Histogram(
    "agora_miner_queue_wait_seconds", "Time a request waited before its batch started", ["task", "method"],
    buckets=_LATENCY,
)
inference_seconds = Histogram(
    "agora_miner_inference_seconds", "Model compute time of one batch", ["task", "model", "method"],
    buckets=_LATENCY,
)
batch_size = Histogram(
    "agora_miner_batch_size", "Rows (prefixes, prompts, sentences, texts) per model batch", ["task", "method"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
queued_requests = Gauge("agora_miner_queued_requests", "Requests waiting for a batch", ["task"])
inflight_requests = Gauge("agora_miner_inflight_requests", "Requests admitted and not yet answered", ["task"])
tokens = Counter("agora_miner_tokens", "Input tokens processed by the model", ["task", "model"])
tokens_per_second = Gauge(
    "agora_miner_tokens_per_second", "Input tokens per second of compute in the last batch", ["task", "model"]
)
model_loaded = Gauge("agora_miner_model_loaded", "1 once the model is loaded and warmed up", ["task", "model"])
model_load_seconds = Gauge(
    "agora_miner_model_load_seconds", "Time to load and warm up the model at start", ["task", "model"]
)
shed = Counter("agora_miner_shed_requests", "Requests refused or dropped by the queue", ["task", "reason"])
auth_failures = Counter("agora_auth_failures", "Requests refused by authentication", ["reason"])
metagraph_refreshes = Counter(
    "agora_miner_metagraph_refreshes", "Reads of the subnet's metagraph, by result (ok, error)", ["result"]
)
metagraph_block = Gauge("agora_miner_metagraph_block", "Chain head when the metagraph in use was read")
permitted_validators = Gauge(
    "agora_miner_permitted_validators", "Hotkeys the metagraph in use permits to call this miner"
)
axon_served = Counter("agora_miner_axon_served", "serve_axon submissions, by result (ok, error)", ["result"])
