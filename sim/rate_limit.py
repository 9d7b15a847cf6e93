"""Engine side of the rate limit: token buckets per account and per person (one IP each).

A request that finds either bucket empty is answered 429 (with the Retry-After
the service would send) at the edge, before it
queues for a worker. A bot operator's accounts share one IP and so one bucket;
each human has their own. The rule is flashsale.defenses.rate_limit.
"""

from __future__ import annotations

from flashsale.checkout import retry_after_header
from flashsale.defenses.rate_limit import TokenBuckets
from flashsale.scenario import RateLimit as RateLimitConfig

from .defense import Defense

__all__ = ["RateLimit"]


class RateLimit(Defense):
    """429 when the account's or the person's bucket is empty."""

    def __init__(self, config: RateLimitConfig) -> None:
        self._accounts = TokenBuckets(config.per_account_per_s, config.burst)
        self._persons = TokenBuckets(config.per_operator_per_s, config.burst)

    def at_edge(self, account: int, person: int, now: float) -> float | None:
        # take from the IP first: a request refused there never reaches the account's
        # bucket; the Retry-After is the refusing bucket's, as the service sends it
        if not self._persons.take(person, now):
            return retry_after_header(self._persons.retry_after(person, now))
        if not self._accounts.take(account, now):
            return retry_after_header(self._accounts.retry_after(account, now))
        return None
