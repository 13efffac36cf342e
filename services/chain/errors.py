"""The chain's specific errors: each subclasses one kind of services.common.errors, which fixes its
gRPC code. Apply scripts name them by class name (the first word of their error reply), so one
table here turns a script's refusal into the right exception at submit time and the same name
prefixes the error of a failed extrinsic ("UnknownSubnet: no subnet 7")."""

from __future__ import annotations

from services.common.errors import (
    AgoraError,
    Conflict,
    FailedPrecondition,
    InsufficientFunds,
    InvalidRequest,
    NotFound,
    OutOfRange,
    Overloaded,
    PermissionDenied,
)


class UnknownSubnet(NotFound):
    pass


class UnknownHotkey(NotFound):
    """The hotkey has no owner yet: it was never registered on any subnet."""


class NotSubnetOwner(PermissionDenied):
    pass


class HotkeyOwnedByOther(PermissionDenied):
    """The hotkey belongs to another coldkey."""


class NotADelegate(PermissionDenied):
    """Stake on another coldkey's hotkey needs that hotkey to be a delegate."""


class NoValidatorPermit(PermissionDenied):
    pass


class HotkeyAlreadyRegistered(Conflict):
    pass


class NotRegistered(FailedPrecondition):
    """The hotkey holds no uid on that subnet."""


class InsufficientStake(FailedPrecondition):
    pass


class BurnAboveLimit(FailedPrecondition):
    """The registration burn is above the max_burn the caller accepted."""


class SubnetLimitReached(FailedPrecondition):
    pass


class StakeTooLowForRoot(FailedPrecondition):
    pass


class WeightsVersionTooLow(FailedPrecondition):
    pass


class CommitRevealEnabled(FailedPrecondition):
    """The subnet takes weights by commit and reveal: set_weights is refused."""


class CommitRevealDisabled(FailedPrecondition):
    """The subnet takes weights by set_weights: commits and reveals are refused."""


class RevealTooEarly(FailedPrecondition):
    """The commit's reveal window has not opened: the message gives its blocks."""


class ExpiredWeightCommit(FailedPrecondition):
    """The commit's reveal window has passed: it never counts; commit again."""


class InvalidRevealCommitHashNotMatch(FailedPrecondition):
    """The revealed uids, weights, salt and version_key hash to none of the hotkey's commits."""


class NoWeightsCommitFound(NotFound):
    pass


class RootNotAllowed(InvalidRequest):
    """The call does not apply to the root subnet (netuid 0), or only to it."""


class UnknownHyperparameter(InvalidRequest):
    pass


class HyperparameterOutOfRange(OutOfRange):
    pass


class UidOutOfRange(OutOfRange):
    pass


class TooFewWeights(OutOfRange):
    pass


class WeightAboveLimit(OutOfRange):
    pass


class TakeOutOfRange(OutOfRange):
    pass


class RateLimited(Overloaded):
    """Too soon since the last call of this kind; the message says how many blocks are left."""


class TooManyRegistrations(Overloaded):
    pass


class TooManyUnrevealedCommits(Overloaded):
    """A hotkey holds at most MAX_UNREVEALED_COMMITS unrevealed commits on a subnet."""


CHAIN_ERRORS: dict[str, type[AgoraError]] = {
    cls.__name__: cls
    for cls in (
        UnknownSubnet, UnknownHotkey, NotSubnetOwner, HotkeyOwnedByOther, NotADelegate, NoValidatorPermit,
        HotkeyAlreadyRegistered, NotRegistered, InsufficientStake, BurnAboveLimit, SubnetLimitReached,
        StakeTooLowForRoot, WeightsVersionTooLow, RootNotAllowed, UnknownHyperparameter, HyperparameterOutOfRange,
        UidOutOfRange, TooFewWeights, WeightAboveLimit, TakeOutOfRange, RateLimited, TooManyRegistrations,
        InsufficientFunds, CommitRevealEnabled, CommitRevealDisabled, RevealTooEarly, ExpiredWeightCommit,
        InvalidRevealCommitHashNotMatch, NoWeightsCommitFound, TooManyUnrevealedCommits,
    )
}
"""Error name (as a script writes it) -> class."""


def from_script(reply: str) -> AgoraError | None:
    """The exception a script's refusal '<ErrorName> <message>' stands for; None when the reply
    names no chain error (a script bug or a Redis failure, not the caller's fault)."""
    name, _, message = reply.partition(" ")
    cls = CHAIN_ERRORS.get(name)
    return None if cls is None else cls(message)
