"""Queue benchmark: how close does nanoweb get to a queue-style upstream's own pace?

300 images through a sandbox fal.ai route whose queue runs 40 requests at once per
account, each taking 20 s: the best any client can do is 300 / 40 × 20 s = 150 s.
A real Celery worker with 4 processes does the work on a scratch instance (its own
var/ directory, SQLite and filesystem broker unless DATABASE_URL / REDIS_URL point
elsewhere). nanoweb submits each request once and polls it on Celery countdowns, so
four processes can keep 300 requests in flight; the peer row is what a client that
waits for each request in a worker (fal_client.subscribe in a task) would take with
the same four processes: 300 / 4 × 20 s.

Reported (printed as a table and written as JSON):

* makespan ÷ ideal — target ≤ 1.10;
* lost jobs (not finished when the run ends) — must be 0;
* requests submitted upstream more than once — must be 0;
* ledger drift (ledger sums vs counters, and spend vs the jobs' costs) — must be 0;
* CPU time of the worker's processes per job (user + system, all processes), and
  polls per job.

    .venv/bin/python bench/queue_upstream.py            # the full run, about 3 minutes
    .venv/bin/python bench/queue_upstream.py --quick    # 60 images, 20 at once, 10 s each (~40 s)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from common import (
    describe_services,
    print_checks,
    scratch_instance,
    start_worker,
    stop,
    write_results,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="60 images, 20 at once, 10 s each")
    p.add_argument("--images", type=int, help="how many images (default 300, quick 60)")
    p.add_argument("--slots", type=int, help="requests the upstream runs at once (40, quick 20)")
    p.add_argument("--latency", type=float, help="seconds per request upstream (20, quick 10)")
    p.add_argument("--concurrency", type=int, default=4, help="worker processes")
    p.add_argument("--output", type=Path, help="JSON file (default bench/results/…)")
    args = p.parse_args()
    args.images = args.images or (60 if args.quick else 300)
    args.slots = args.slots or (20 if args.quick else 40)
    args.latency = args.latency or (10.0 if args.quick else 20.0)
    return args


def process_group_cpu(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group (the worker
    and its prefork children), read from /proc."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid pgrp session ... utime(12) stime(13)
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def run(args: argparse.Namespace) -> dict:
    var = scratch_instance("queue")
    from accounts import quotas
    from accounts.models import User
    from generations import jobs
    from generations.catalog import LIST_PRICES_FROM
    from generations.models import Generation, ModelSpec, Price, Provider, ProviderKey, Route
    from generations.sandbox.server import SandboxConfig, running_sandbox

    config = SandboxConfig(queue_latency=(args.latency, args.latency), queue_concurrency=args.slots)
    with running_sandbox(config) as url:
        model = ModelSpec.objects.get(slug="sandbox")
        Route.objects.filter(model=model).update(enabled=False)  # only the fal route
        provider = Provider.objects.create(
            name="fal.ai (sandbox)", kind="fal", base_url=url + "/fal"
        )
        key = ProviderKey(provider=provider, label="bench")
        key.set_key("bench-fal-key-0123456789")
        key.save()
        route = Route.objects.create(
            model=model, provider=provider, upstream_model="fal-ai/nano-banana", priority=1
        )
        Price.objects.create(
            route=route, effective_from=LIST_PRICES_FROM, per_image={"1K": 39000, "default": 39000}
        )
        user = User.objects.create_user(
            email="bench@example.com",
            daily_image_limit=None,
            monthly_budget_micros=None,
            max_concurrent_jobs=None,
        )
        worker = start_worker(var, args.concurrency)
        try:
            cpu_before = process_group_cpu(worker.pid)
            ideal = args.images / args.slots * args.latency
            started = time.monotonic()
            for i in range(args.images):  # one prompt per image: submits are counted by it
                jobs.submit(
                    user,
                    jobs.JobRequest(
                        model=model, prompt=f"queue bench {i}", aspect_ratio="1:1", image_size="1K"
                    ),
                )
            submitted_in = time.monotonic() - started
            give_up = started + ideal * 3 + 60
            while Generation.objects.in_flight().exists() and time.monotonic() < give_up:
                time.sleep(0.25)
            makespan = time.monotonic() - started
            cpu = process_group_cpu(worker.pid) - cpu_before
            stats = httpx.get(f"{url}/healthz").json().get("queue", {})
        finally:
            stop(worker)

    rows = list(Generation.objects.all())
    first = min(g.created for g in rows)
    last_wave = sorted((g.finished - first).total_seconds() for g in rows if g.finished)[
        -args.slots :
    ]
    statuses = Counter(g.status for g in rows)
    summary = quotas.summary(user)
    spent = sum(g.actual_micros or 0 for g in rows if g.status == "succeeded")
    drift = abs(summary.spent_month - spent) + summary.reserved_month
    by_prompt = stats.get("submitted_by_prompt", {})
    return {
        "images": args.images,
        "upstream_slots": args.slots,
        "upstream_latency_s": args.latency,
        "worker_concurrency": args.concurrency,
        **describe_services(),
        "load_average": os.getloadavg(),
        "ideal_s": round(ideal, 1),
        # The queue runs whole waves: the last one ends no sooner than this.
        "wave_minimum_s": round(math.ceil(args.images / args.slots) * args.latency, 1),
        "blocking_client_s": round(args.images / args.concurrency * args.latency, 1),
        "makespan_s": round(makespan, 1),
        "submit_loop_s": round(submitted_in, 1),
        "last_wave_finished_s": [round(x, 1) for x in (last_wave[0], last_wave[-1])],
        "makespan_ratio": round(makespan / ideal, 3),
        "submitted_upstream": stats.get("submitted", 0),
        "polls_upstream": stats.get("polls", 0),
        "polls_per_job": round(stats.get("polls", 0) / args.images, 1),
        "submitted_twice": sum(1 for n in by_prompt.values() if n > 1),
        "succeeded": statuses.get("succeeded", 0),
        "failed": statuses.get("failed", 0),
        "lost_jobs": args.images - statuses.get("succeeded", 0) - statuses.get("failed", 0),
        "worker_cpu_s": round(cpu, 2),
        "worker_cpu_ms_per_job": round(cpu / args.images * 1000, 1),
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
        ("lost jobs", str(result["lost_jobs"]), "0", result["lost_jobs"] == 0),
        (
            "requests submitted twice",
            str(result["submitted_twice"]),
            "0",
            result["submitted_twice"] == 0,
        ),
        (
            "ledger drift (µ$) + problems",
            f"{result['ledger_drift_micros']} + {result['ledger_problems']}",
            "0 + 0",
            result["ledger_drift_micros"] == 0 and result["ledger_problems"] == 0,
        ),
    ]
    print(
        f"\nnanoweb queue benchmark{' (quick)' if quick else ''}: {result['images']} images "
        f"through a fal.ai sandbox queue running {result['upstream_slots']} at once, "
        f"{result['upstream_latency_s']} s each; {result['worker_concurrency']} worker "
        f"processes; {result['database']} + {result['broker']} broker; load average "
        f"{' '.join(f'{x:.2f}' for x in result['load_average'])}"
    )
    print(f"\n{'client':<40} {'makespan':>10}")
    print(f"{'ideal (the upstream’s own pace)':<40} {result['ideal_s']:>9.1f}s")
    print(f"{'the last wave’s end (whole waves)':<40} {result['wave_minimum_s']:>9.1f}s")
    print(f"{'nanoweb (submit, poll on countdowns)':<40} {result['makespan_s']:>9.1f}s")
    print(f"{'a worker waiting on each request':<40} {result['blocking_client_s']:>9.1f}s")
    print(
        f"\n{result['submitted_upstream']} submitted, {result['polls_upstream']} polls "
        f"({result['polls_per_job']} per job); worker CPU {result['worker_cpu_s']} s = "
        f"{result['worker_cpu_ms_per_job']} ms per job; {result['succeeded']} succeeded, "
        f"{result['failed']} failed\n"
    )
    passed = print_checks(checks)
    name = f"queue_upstream{'-quick' if quick else ''}"
    write_results(name, {**result, "passed": passed}, output)
    return passed


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(0 if report(run(arguments), arguments.quick, arguments.output) else 1)
