"""Keeping upstream trouble away from people.

* :mod:`.backoff` — exponential backoff with full jitter and per-class retry budgets;
* :mod:`.breaker` — a circuit breaker per route;
* :mod:`.limiter` — a rate limiter per provider key (RPM, RPD, concurrent calls);
* :mod:`.store` — where the last two keep their state, shared by every worker
  process and machine: the database in the embedded default, Redis in production.
"""

from generations.resilience.backoff import (
    MAX_COUNTDOWN_SECONDS,
    RETRY_BUDGET,
    backoff_delay,
    retry_delay,
)

__all__ = ["MAX_COUNTDOWN_SECONDS", "RETRY_BUDGET", "backoff_delay", "retry_delay"]
