"""Keeping upstream trouble away from people.

* :mod:`.backoff` — exponential backoff with full jitter and per-class retry budgets;
* :mod:`.breaker` — a circuit breaker per route: ``allow(route_id)``, ``record(route_id, ok)``
  (its rules in :mod:`.circuit`);
* :mod:`.limiter` — a rate limiter per provider key (RPM, RPD, concurrent calls):
  ``acquire(key_id, limits)``, ``release(permit)``;
* :mod:`.store` — where the last two keep their state, shared by every worker
  process and machine: the database in the embedded default, Redis in production;
* :mod:`.types` — the data they pass around.
"""

from generations.resilience.backoff import (
    MAX_COUNTDOWN_SECONDS,
    RETRY_BUDGET,
    backoff_delay,
    retry_delay,
)

__all__ = ["MAX_COUNTDOWN_SECONDS", "RETRY_BUDGET", "backoff_delay", "retry_delay"]
