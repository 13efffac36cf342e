"""The project's error hierarchy. No gRPC import here: the server maps kinds to codes once.

An AgoraError is an expected failure caused by the request; its message is shown to the caller,
so it says what was wrong and with which value. Anything else is a bug and becomes INTERNAL,
except that Redis being unreachable (REDIS_UNREACHABLE) is UNAVAILABLE: retrying is the right answer.
"""

import redis.exceptions

REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)
"""What a call raises while Redis is down or restarting: redis-py's own ConnectionError (loading
included) and TimeoutError are not the builtins, so catching only those misses them."""


class AgoraError(Exception):
    """Expected failure caused by the request."""


class InvalidRequest(AgoraError):
    """Malformed request: wrong shape, bad encoding, bad address. -> INVALID_ARGUMENT"""


class OutOfRange(AgoraError):
    """A value outside its valid range. -> OUT_OF_RANGE"""


class NotFound(AgoraError):
    """Unknown block, account, subnet, uid, wallet. -> NOT_FOUND"""


class Conflict(AgoraError):
    """Already exists: hotkey registered, extrinsic already in the pool. -> ALREADY_EXISTS"""


class FailedPrecondition(AgoraError):
    """State forbids it: insufficient balance, not registered. -> FAILED_PRECONDITION"""


class Unauthenticated(AgoraError):
    """Bad or missing signature, wrong chain id, stale or replayed nonce. -> UNAUTHENTICATED"""


class PermissionDenied(AgoraError):
    """Identified but not allowed: not the owner, no validator permit. -> PERMISSION_DENIED"""


class Overloaded(AgoraError):
    """Rate limit, full queue or pool. -> RESOURCE_EXHAUSTED"""


class Unavailable(AgoraError):
    """A dependency is down or the service is draining; safe to retry. -> UNAVAILABLE"""


class Aborted(AgoraError):
    """A concurrent update won a race; retry the whole operation. -> ABORTED"""


# Specific errors used in more than one service.
class InvalidAddress(InvalidRequest):
    pass


class InvalidAmount(InvalidRequest):
    pass


class InsufficientFunds(FailedPrecondition):
    pass


class BadSignature(Unauthenticated):
    pass


class WrongChain(Unauthenticated):
    pass


class StaleNonce(Unauthenticated):
    pass


class FutureNonce(FailedPrecondition):
    pass


class DuplicateExtrinsic(Conflict):
    pass
