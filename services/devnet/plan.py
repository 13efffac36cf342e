"""What `make run` brings up: three subnets, each with a ladder of real miners (best first, a noise
miner last) and two validators, and the queries its user pays for.

Keys follow the CLI's dev convention (coldkey //Name, hotkey //Name//hotkey); `wallets.py` writes
them as ordinary wallet files, so every process is started with the same flags a user would type.
The ladders are the ones the slow tests check on the chain (tests/test_validator_ladder.py).
"""

from __future__ import annotations

from dataclasses import dataclass

OWNER = "Alice"          # creates the subnets and pays their lock
USER_WALLET = "user-demo"  # the paying user's encrypted coldkey (created on the first run)
TEMPO = 20               # blocks between epochs: 5 s at 250 ms blocks
MIN_TEMPO = 1            # the chain allows dev tempos this short


@dataclass(frozen=True, slots=True)
class MinerPlan:
    hotkey: str              # hotkey name (under `coldkey`); also the process name
    model: str               # alias for `agora miner start --model`
    degrade: float = 0.0     # --degrade: weight noise as a fraction of each tensor's std
    coldkey: str = "Eve"

    @property
    def label(self) -> str:
        return self.model + (f"+{self.degrade:.0%} noise" if self.degrade else "")


@dataclass(frozen=True, slots=True)
class ValidatorPlan:
    coldkey: str
    stake_tao: int
    hotkey: str = "validator"


@dataclass(frozen=True, slots=True)
class SubnetPlan:
    name: str
    task: str                      # next-token | translation | embedding
    miners: tuple[MinerPlan, ...]  # the ladder, best first: emission should follow this order
    round_items: int               # items per validator round, the same for every miner
    round_interval_s: float
    timeout_s: float               # a miner's deadline in a round (generous: 2 cores serve 12 models)
    queries: tuple[tuple[str, ...], ...]   # what the user asks, in turn

    def miner(self, hotkey: str) -> MinerPlan | None:
        return next((m for m in self.miners if m.hotkey == hotkey), None)


VALIDATORS = (ValidatorPlan("Bob", 3000), ValidatorPlan("Charlie", 2000))

SUBNETS = (
    SubnetPlan(
        name="text", task="next-token",
        miners=(MinerPlan("text-gemma3", "gemma3-270m"), MinerPlan("text-smollm2", "smollm2-135m"),
                MinerPlan("text-smollm2-noisy", "smollm2-135m", 0.10, "Ferdie"),
                MinerPlan("text-noise", "noise", coldkey="Ferdie")),
        round_items=8, round_interval_s=20, timeout_s=60,
        queries=(("The capital of France is",), ("A good way to learn a new language is",),
                 ("The first thing to check when a server is slow is",)),
    ),
    SubnetPlan(
        name="translate", task="translation",
        miners=(MinerPlan("tr-gemma3", "gemma3-270m"), MinerPlan("tr-gemma3-noisy", "gemma3-270m", 0.01),
                MinerPlan("tr-echo", "echo", coldkey="Ferdie"), MinerPlan("tr-noise", "noise", coldkey="Ferdie")),
        round_items=4, round_interval_s=30, timeout_s=90,
        queries=(("fr", "The weather is nice today."), ("de", "Where is the train station?"),
                 ("es", "I would like a cup of coffee, please.")),
    ),
    SubnetPlan(
        name="embed", task="embedding",
        miners=(MinerPlan("emb-mpnet", "mpnet-base"), MinerPlan("emb-minilm", "minilm-l6"),
                MinerPlan("emb-minilm-noisy", "minilm-l6", 0.40, "Ferdie"),
                MinerPlan("emb-noise", "noise", coldkey="Ferdie")),
        round_items=8, round_interval_s=20, timeout_s=60,
        queries=(("How do I reset my password?", "Steps to recover a forgotten password", "Best pizza in Naples"),
                 ("A cat sleeps on the sofa.", "A kitten is napping on the couch.", "Stock markets fell today."),),
    ),
)
