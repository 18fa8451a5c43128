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
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


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


def setup_django(var: Path) -> None:
    os.environ.update(
        NANOWEB_VAR_DIR=str(var),
        DJANGO_SETTINGS_MODULE="nanoweb.settings",
        NANOWEB_SANDBOX="on",
        GEMINI_API_KEY="",
    )
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{var / 'bench.sqlite3'}")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    logging.getLogger("generations.sandbox").setLevel(logging.WARNING)


def start_worker(var: Path, concurrency: int) -> subprocess.Popen:
    log = var / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "nanoweb", "worker", "--pool", "prefork",
             "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--purge"],
            cwd=REPO, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"The worker did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return proc


def run(args: argparse.Namespace) -> dict:
    var = Path(tempfile.mkdtemp(prefix="nanoweb-bench-"))
    setup_django(var)
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
            email="bench@example.com", daily_image_limit=None, monthly_budget_micros=None,
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
                jobs.submit(user, jobs.JobRequest(model=model, prompt=f"bench {left}",
                                                  aspect_ratio="1:1", image_size="1K", count=n))
                left -= n
            give_up = started + ideal * 3 + 60
            while Generation.objects.in_flight().exists() and time.monotonic() < give_up:
                time.sleep(0.5)
            makespan = time.monotonic() - started
        finally:
            worker.terminate()
            worker.wait(timeout=30)

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
        "store": settings.NANOWEB_RESILIENCE_STORE,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "broker": settings.CELERY_BROKER_URL.split(":", 1)[0],
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
        ("makespan ÷ ideal", f"{result['makespan_ratio']:.3f}", "≤ 1.10",
         result["makespan_ratio"] <= 1.10),
        ("upstream 429s / calls", f"{result['share_429']:.2%}", "≤ 2 %",
         result["share_429"] <= 0.02),
        ("lost jobs", str(result["lost_jobs"]), "0", result["lost_jobs"] == 0),
        ("ledger drift (µ$) + problems",
         f"{result['ledger_drift_micros']} + {result['ledger_problems']}", "0 + 0",
         result["ledger_drift_micros"] == 0 and result["ledger_problems"] == 0),
    ]
    print(f"\nnanoweb rate-limit benchmark{' (quick)' if quick else ''}: "
          f"{result['images']} images, {result['keys']} keys × {result['rpm_per_key']} RPM, "
          f"{result['latency_s']} s latency, {result['error_rate']:.0%} 503s; "
          f"{result['database']} + {result['broker']} broker, {result['store']} limiter")
    print(f"ideal {result['ideal_s']} s, makespan {result['makespan_s']} s; "
          f"{result['upstream_calls']} upstream calls ({result['upstream_503']} × 503), "
          f"{result['succeeded']} succeeded, {result['failed']} failed\n")
    width = max(len(c[0]) for c in checks)
    print(f"{'measure':<{width}}  {'value':>12}  {'target':>8}  result")
    for name, value, target, ok in checks:
        print(f"{name:<{width}}  {value:>12}  {target:>8}  {'ok' if ok else 'MISSED'}")
    passed = all(c[3] for c in checks)
    output = output or RESULTS / f"rate_limit{'-quick' if quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({**result, "passed": passed}, indent=2) + "\n")
    print(f"\nwritten to {output}")
    return passed


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(0 if report(run(arguments), arguments.quick, arguments.output) else 1)
