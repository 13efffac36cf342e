"""MinerSettings: everything a miner process is told (the CLI fills it from flags)."""

from __future__ import annotations

from dataclasses import dataclass

from services.miner.tasks import DEFAULT_MODELS

AUTH_MODES = ("signature", "allow-all")


@dataclass(frozen=True, slots=True)
class MinerSettings:
    netuid: int = 1
    task: str = "next-token"                # next-token | translation | embedding; with a chain, the subnet's
    chain: str | None = None                # chain HOST:PORT; None: offline (no registration, no metagraph)
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: str | None = None          # None: ~/.bittensor/wallets, as btcli
    model: str = ""                         # alias, local path or hub id; "" = the task's default
    gguf_file: str | None = None            # a GGUF file inside `model`, converted once to a plain folder
    dtype: str = "float32"                  # float32 | bfloat16 | float16
    threads: int = 0                        # torch intra-op threads; 0 = one per core
    pack_weights: bool = True               # oneDNN-packed linear layers: ~2x the matmul speed of torch's default
    degrade: float = 0.0                    # weight noise as a fraction of each tensor's std (quality ladder)
    seed: int = 0                           # seeds `degrade` and the noise toy
    host: str = "127.0.0.1"
    port: int = 50061
    axon_host: str | None = None            # published with serve_axon instead of host (AGORA_AXON_HOST)
    axon_port: int | None = None            # ... instead of the listening port (AGORA_AXON_PORT)
    metagraph_refresh_blocks: int = 10      # read the metagraph at least every this many blocks
    metrics_port: int | None = 9101         # None: no /metrics endpoint
    max_batch: int = 8                      # rows (prefixes, prompts, sentences, texts) per model call
    max_wait_ms: float = 10.0               # how long a batch waits to fill once a request is queued
    queue_limit: int = 64                   # waiting requests at most; past that RESOURCE_EXHAUSTED
    queue_rows: int = 256                   # waiting rows at most: bounds an admitted request's wait, any sizes
    max_request_items: int = 64             # prefixes, sentences or texts per request
    auth: str = "signature"                 # signature | allow-all (development only)
    max_age_ms: int = 30_000                # request timestamps older than this are refused
    max_future_ms: int = 5_000              # ... and ones further ahead of the miner's clock
    warm_up: bool = True

    @property
    def model_spec(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.task, "")
