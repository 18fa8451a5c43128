"""Rate-limit benchmark: how close does nanoweb get to the upstream's limit?

300 images through the sandbox upstream (1.5 s latency, 5 % answered 503) with two
provider keys, each limited by the upstream to 60 requests per minute. The best any
client can do is 300 / 120 RPM = 150 s. A real Celery worker does the work on a
scratch instance (its own var/ directory, SQLite and filesystem broker unless
DATABASE_URL / REDIS_URL point elsewhere — use scratch services for that).

Reported (printed as a table and written as JSON):

* makespan ÷ ideal — target ≤ 1.10;
* upstream 429s as a share of upstream calls — target ≤ 2 %;
* lost jobs (not finished when the run ends) — must be 0;
* ledger drift (ledger sums vs counters, and spend vs the jobs' costs) — must be 0.

    .venv/bin/python bench/rate_limit.py            # the full run, about 3 minutes
    .venv/bin/python bench/rate_limit.py --quick    # 60 images, 2 keys × 30 RPM (~1 min)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

from common import (
    describe_services,
    print_checks,
    scratch_instance,
    start_worker,
    stop,
    write_results,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="60 images, 2 keys × 30 RPM")
    p.add_argument("--images", type=int, help="how many images (default 300, quick 60)")
    p.add_argument("--rpm", type=int, help="requests per minute per key (default 60, quick 30)")
    p.add_argument("--keys", type=int, default=2)
    p.add_argument("--latency", type=float, default=1.5, help="upstream seconds per call")
    p.add_argument("--error-rate", type=float, default=0.05, help="share answered 503")
    p.add_argument("--concurrency", type=int, default=8, help="worker processes")
    p.add_argument("--output", type=Path, help="JSON file (default bench/results/…)")
    args = p.parse_args()
    args.images = args.images or (60 if args.quick else 300)
    args.rpm = args.rpm or (30 if args.quick else 60)
    return args


def run(args: argparse.Namespace) -> dict:
    var = scratch_instance("rate-limit")
    from django.conf import settings

    from accounts import quotas
    from accounts.models import User
    from generations import jobs
    from generations.models import Attempt, Generation, ModelSpec, Provider, ProviderKey
    from generations.providers_setup import configure_providers
    from generations.sandbox.server import SandboxConfig, running_sandbox

    config = SandboxConfig(
        latency_min=args.latency,
        latency_max=args.latency,
        rates={"unavailable": args.error_rate},
        rpm=args.rpm,
    )
    with running_sandbox(config) as url:
        settings.NANOWEB_SANDBOX_URL = url
        configure_providers()
        provider = Provider.objects.get(is_sandbox=True)
        provider.rpm = args.rpm
        provider.save()
        for i in range(1, args.keys):
            key = ProviderKey(provider=provider, label=f"bench-{i}")
            key.set_key(f"bench-key-{i}-0123456789")
            key.save()
        model = ModelSpec.objects.get(slug="sandbox")
        user = User.objects.create_user(
            email="bench@example.com",
            daily_image_limit=None,
            monthly_budget_micros=None,
            max_concurrent_jobs=None,
        )
        os.environ["NANOWEB_SANDBOX_URL"] = url
        worker = start_worker(var, args.concurrency)
        try:
            ideal = args.images / (args.rpm * args.keys) * 60
            started = time.monotonic()
            left = args.images
            while left:
                n = min(4, left)
                jobs.submit(
                    user,
                    jobs.JobRequest(
                        model=model,
                        prompt=f"bench {left}",
                        aspect_ratio="1:1",
                        image_size="1K",
                        count=n,
                    ),
                )
                left -= n
            give_up = started + ideal * 3 + 60
            while Generation.objects.in_flight().exists() and time.monotonic() < give_up:
                time.sleep(0.5)
            makespan = time.monotonic() - started
        finally:
            stop(worker)

    rows = list(Generation.objects.all())
    statuses = Counter(g.status for g in rows)
    attempts = Counter(Attempt.objects.values_list("outcome", flat=True))
    calls = sum(attempts.values())
    summary = quotas.summary(user)
    spent = sum(g.actual_micros or 0 for g in rows if g.status == "succeeded")
    drift = abs(summary.spent_month - spent) + summary.reserved_month
    return {
        "images": args.images,
        "keys": args.keys,
        "rpm_per_key": args.rpm,
        "latency_s": args.latency,
        "error_rate": args.error_rate,
        "worker_concurrency": args.concurrency,
        **describe_services(),
        "ideal_s": round(ideal, 1),
        "makespan_s": round(makespan, 1),
        "makespan_ratio": round(makespan / ideal, 3),
        "upstream_calls": calls,
        "upstream_429": attempts.get("rate_limited", 0),
        "share_429": round(attempts.get("rate_limited", 0) / calls, 4) if calls else 0.0,
        "upstream_503": attempts.get("transient", 0),
        "succeeded": statuses.get("succeeded", 0),
        "failed": statuses.get("failed", 0),
        "lost_jobs": args.images - statuses.get("succeeded", 0) - statuses.get("failed", 0),
        "ledger_problems": len(quotas.ledger_problems()),
        "ledger_drift_micros": drift,
    }


def report(result: dict, quick: bool, output: Path | None) -> bool:
    checks = [
        (
            "makespan ÷ ideal",
            f"{result['makespan_ratio']:.3f}",
            "≤ 1.10",
            result["makespan_ratio"] <= 1.10,
        ),
        (
            "upstream 429s / calls",
            f"{result['share_429']:.2%}",
            "≤ 2 %",
            result["share_429"] <= 0.02,
        ),
        ("lost jobs", str(result["lost_jobs"]), "0", result["lost_jobs"] == 0),
        (
            "ledger drift (µ$) + problems",
            f"{result['ledger_drift_micros']} + {result['ledger_problems']}",
            "0 + 0",
            result["ledger_drift_micros"] == 0 and result["ledger_problems"] == 0,
        ),
    ]
    print(
        f"\nnanoweb rate-limit benchmark{' (quick)' if quick else ''}: "
        f"{result['images']} images, {result['keys']} keys × {result['rpm_per_key']} RPM, "
        f"{result['latency_s']} s latency, {result['error_rate']:.0%} 503s; "
        f"{result['database']} + {result['broker']} broker, {result['store']} limiter"
    )
    print(
        f"ideal {result['ideal_s']} s, makespan {result['makespan_s']} s; "
        f"{result['upstream_calls']} upstream calls ({result['upstream_503']} × 503), "
        f"{result['succeeded']} succeeded, {result['failed']} failed\n"
    )
    passed = print_checks(checks)
    write_results(f"rate_limit{'-quick' if quick else ''}", {**result, "passed": passed}, output)
    return passed


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(0 if report(run(arguments), arguments.quick, arguments.output) else 1)
