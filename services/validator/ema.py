"""The validator's memory of each miner: an exponential moving average of its per-round share, kept
per uid and forgotten when the uid changes hands; and the u16 weight row it turns into.

    ema = EmaState.new(alpha=0.1)
    ema = ema.update(normalize_scores(round_scores), metagraph_hotkeys)
    uids, weights = weights_from_ema(ema, max_weights=256, min_weights=1)

The state is plain data (`to_dict` / `from_dict`), so the validator can keep it in Redis across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real

from services.common.units import U16_MAX


@dataclass(frozen=True, slots=True)
class EmaState:
    alpha: float                 # weight of the newest round: at 0.1 a round's influence halves in ~6.6 rounds
    values: Mapping[int, float]  # uid -> moving average, in [0, 1] when fed normalised scores
    hotkeys: Mapping[int, str]   # uid -> the hotkey the average belongs to

    @classmethod
    def new(cls, alpha: float) -> EmaState:
        _check_alpha(alpha)
        return cls(alpha, {}, {})

    def update(self, scores: Mapping[int, float], hotkeys: Mapping[int, str]) -> EmaState:
        """One round: value <- alpha * score + (1 - alpha) * value.

        `hotkeys` is the subnet's uid -> hotkey now. A uid missing from it has left and is dropped;
        a uid whose hotkey differs from last time belongs to a new miner and starts again from 0 (the
        old miner's record must not pay the newcomer); a uid without a score this round (not
        queried) keeps its value. A miner that was queried and failed should be given 0, not left out.
        """
        values: dict[int, float] = {}
        for uid, hotkey in hotkeys.items():
            previous = self.values.get(uid, 0.0) if self.hotkeys.get(uid) == hotkey else 0.0
            if uid in scores:
                values[uid] = self.alpha * _clean(scores[uid]) + (1.0 - self.alpha) * previous
            else:
                values[uid] = previous
        return EmaState(self.alpha, values, dict(hotkeys))

    def to_dict(self) -> dict:
        """JSON-ready: {"alpha": 0.1, "uids": {"3": {"hotkey": "5F...", "value": 0.2}}}."""
        return {
            "alpha": self.alpha,
            "uids": {str(uid): {"hotkey": self.hotkeys[uid], "value": self.values.get(uid, 0.0)}
                     for uid in sorted(self.hotkeys)},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> EmaState:
        try:
            alpha = float(data["alpha"])
            rows = {int(uid): (str(row["hotkey"]), float(row["value"])) for uid, row in data["uids"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a saved moving average ({exc!r}): {str(data)[:200]}") from None
        _check_alpha(alpha)
        return cls(alpha, {uid: _clean(v) for uid, (_, v) in rows.items()}, {uid: h for uid, (h, _) in rows.items()})


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha {alpha} is not in (0, 1]")


def _clean(value: object) -> float:
    return float(value) if isinstance(value, Real) and math.isfinite(value) and value > 0 else 0.0


def weights_from_ema(ema: EmaState | Mapping[int, float], max_weights: int,
                     min_weights: int = 0) -> tuple[list[int], list[int]]:
    """(uids ascending, u16 weights) for set_weights: the `max_weights` best uids, scaled so the best
    gets 65535 (max-upscaling, as Bittensor's convert_weights_and_uids_for_emit); a kept uid never
    rounds down to 0.

    When fewer than `min_weights` uids have a positive average, the row is filled up with the next
    uids at the smallest weight (1; or 65535 each if nobody has earned anything), as Bittensor's
    process_weights_for_netuid does, so that the chain accepts it. No uid and `min_weights` 0: empty.
    """
    if max_weights < 1 or min_weights < 0 or min_weights > max_weights:
        raise ValueError(f"need 1 <= max_weights ({max_weights}) and 0 <= min_weights ({min_weights}) <= max_weights")
    values = ema.values if isinstance(ema, EmaState) else ema
    ranked = sorted(((uid, _clean(v)) for uid, v in values.items()), key=lambda uv: (-uv[1], uv[0]))
    earned = [(uid, v) for uid, v in ranked if v > 0][:max_weights]
    if len(earned) < min_weights and len(ranked) < min_weights:
        raise ValueError(f"only {len(ranked)} uids known, the chain wants at least {min_weights} weights")
    top = earned[0][1] if earned else 0.0
    row = {uid: max(1, round(v / top * U16_MAX)) for uid, v in earned}
    filler = 1 if earned else U16_MAX
    for uid, _ in ranked:
        if len(row) >= min_weights:
            break
        row.setdefault(uid, filler)
    uids = sorted(row)
    return uids, [row[uid] for uid in uids]


def max_share_u16(weights: list[int]) -> int:
    """The largest weight's share of the row as the chain measures it: max * 65535 // sum."""
    total = sum(weights)
    return max(weights) * U16_MAX // total if total else 0


def cap_max_share(weights: list[int], limit_u16: int) -> list[int]:
    """The row with its largest share at most `limit_u16` / 65535 (the subnet's max_weights_limit),
    as Bittensor's normalize_max_weight does: the largest weights come down to one common cap c,
    where c = limit * sum(min(w, c)), and the others keep their proportions. Max-upscaled to 65535.

    When the limit cannot be met (fewer than 65535 / limit weights) the row comes back uniform,
    which is as close as it gets; the chain will refuse it and say why.
    """
    n = len(weights)
    if n == 0 or limit_u16 >= U16_MAX or max_share_u16(weights) <= limit_u16:
        return list(weights)
    if n * limit_u16 < U16_MAX:
        return [U16_MAX] * n
    limit = limit_u16 / U16_MAX
    desc = sorted((float(w) for w in weights), reverse=True)
    cap = desc[0]
    for k in range(1, n + 1):   # the k largest are capped: c = L * (k c + rest)  =>  c = L rest / (1 - L k)
        rest = math.fsum(desc[k:])
        if limit * k >= 1.0:
            cap = desc[k - 1]
            break
        c = limit * rest / (1.0 - limit * k)
        if c <= desc[k - 1] and (k == n or c >= desc[k]):
            cap = c
            break
    # rounding the uncapped weights up lowers the top's share, never raises it
    row = [U16_MAX if w >= cap else max(1, math.ceil(w / cap * U16_MAX)) for w in weights]
    return row if max_share_u16(row) <= limit_u16 else [U16_MAX] * n
