"""One contender in the cross-process limiter test: wait for the shared start, then try
to take permits as fast as possible; print how many were granted."""

import os
import sys
import time


def main(key_id: int, rpm: int, tries: int, start_at: float) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoweb.settings")
    import django

    django.setup()
    from generations.resilience import limiter
    from generations.resilience.types import Limits, Permit

    time.sleep(max(0.0, start_at - time.time()))
    granted = 0
    for _ in range(tries):
        granted += isinstance(limiter.acquire(key_id, Limits(rpm=rpm), 30), Permit)
    print(granted)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
