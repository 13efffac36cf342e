"""The one way services open Redis: a redis.asyncio client that retries a command when its
connection has dropped.

After Redis restarts, every pooled connection is dead and the next command on each fails with
"Connection closed by server"; retrying on a fresh connection is the right answer, not an error to
the caller. A write retried after Redis ran it but before the reply arrived is safe for the ledger:
a submission is keyed by its hash (a repeat is refused as a duplicate) and every block step is
journalled for exactly-once. An outage longer than the retries still raises (UNAVAILABLE to callers).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

RETRIES = 3


def redis_client(url: str, **kwargs: object) -> aioredis.Redis:
    return aioredis.from_url(url, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
                             retry_on_error=[ConnectionError, TimeoutError], **kwargs)
