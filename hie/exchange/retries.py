"""When to try again: the backoff shared by custodian calls and webhook deliveries."""

import random

from django.conf import settings


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter around its middle: attempt 1 waits about BACKOFF, then 2x, 4x..."""
    ceiling = min(settings.EXCHANGE_BACKOFF_SECONDS * 2 ** (attempt - 1), settings.EXCHANGE_BACKOFF_MAX_SECONDS)
    return ceiling * (0.5 + random.random())  # noqa: S311 - spreading retries, not a secret
