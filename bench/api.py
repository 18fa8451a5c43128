"""API benchmark: what does nanoweb add on top of the upstream it calls?

The same image (sandbox model, 1024×1024, returned as base64) is asked for in two
ways at the same concurrency:

* **direct** — ``generateContent`` straight to the sandbox upstream, with the body
  nanoweb's Gemini provider sends;
* **API** — ``POST /v1/images/generations`` to nanoweb as the ``openai`` SDK calls it:
  token check, quota admission, a Celery job through the broker, the worker's call
  to the same sandbox, the image stored and thumbnailed, settlement, and the
  waiting request woken and answered.

Everything runs as in production on one machine: the sandbox upstream process,
gunicorn with uvicorn workers (``nanoweb.asgi``), a prefork Celery worker with one
process per concurrent image, and the load generator (asyncio + httpx). The
sandbox answers after 0 s and after 2 s.

Reported per latency and concurrency (1, 20, 50), printed and written as JSON:
p50 / p95 / p99 of both, the added latency (API minus direct, percentile by
percentile), sustained requests per second through the API, and errors. Targets
at concurrency 50: p50 added ≤ 50 ms, p99 added ≤ 200 ms, zero errors.

    .venv/bin/python bench/api.py            # the full run, about 5 minutes
    .venv/bin/python bench/api.py --quick    # fewer requests (~2 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from common import (
    describe_services,
    print_checks,
    scratch_instance,
    start_process,
    start_worker,
    stop,
    write_results,
)

PROMPT = "a lighthouse on a cliff at dusk, benchmark request"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer requests per level")
    p.add_argument(
        "--latencies",
        type=float,
        nargs="+",
        default=[0.0, 2.0],
        help="sandbox seconds per call (default 0 2)",
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 20, 50])
    p.add_argument("--rounds", type=int, help="requests per client per level (default 4, quick 2)")
    p.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    p.add_argument("--output", type=Path, help="JSON file (default bench/results/…)")
    args = p.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 4)
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def load(send, concurrency: int, total: int) -> dict:
    """``total`` calls of ``send(client)`` from ``concurrency`` clients; timings in ms."""
    timings: list[float] = []
    outcomes: Counter = Counter()
    queue = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10), limits=limits) as client:

        async def one_client() -> None:
            for _ in queue:
                started = time.perf_counter()
                try:
                    outcome = await send(client)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                timings.append((time.perf_counter() - started) * 1000)
                outcomes[outcome] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ok = outcomes.get("ok", 0)
    return {
        "requests": total,
        "ok": ok,
        "errors": {k: v for k, v in outcomes.items() if k != "ok"},
        "p50_ms": round(percentile(timings, 50), 1),
        "p95_ms": round(percentile(timings, 95), 1),
        "p99_ms": round(percentile(timings, 99), 1),
        "wall_s": round(wall, 2),
        "req_per_s": round(ok / wall, 2),
    }


def direct_sender(sandbox_url: str, upstream_model: str):
    from generations.providers.base import ImageRequest
    from generations.providers.gemini import build_request_body
    from generations.providers_setup import SANDBOX_KEY

    url = f"{sandbox_url}/v1beta/models/{upstream_model}:generateContent"
    body = build_request_body(
        ImageRequest(
            upstream_model=upstream_model, prompt=PROMPT, aspect_ratio="1:1", image_size="1K"
        )
    )
    headers = {"x-goog-api-key": SANDBOX_KEY}

    async def send(client: httpx.AsyncClient) -> str:
        r = await client.post(url, json=body, headers=headers)
        return "ok" if r.status_code == 200 and b'"inlineData"' in r.content else str(r.status_code)

    return send


def api_sender(web_url: str, token: str):
    url = f"{web_url}/v1/images/generations"
    body = {
        "model": "sandbox",
        "prompt": PROMPT,
        "size": "1024x1024",
        "response_format": "b64_json",
    }
    headers = {"Authorization": f"Bearer {token}"}

    async def send(client: httpx.AsyncClient) -> str:
        r = await client.post(url, json=body, headers=headers)
        return "ok" if r.status_code == 200 and b'"b64_json"' in r.content else str(r.status_code)

    return send


def prepare(prefix: str):
    """A scratch instance routed to a sandbox on a free port, and an unlimited user with
    an API token: (var dir, sandbox port, web port, the sandbox's upstream model, user,
    token)."""
    var = scratch_instance(prefix)
    from django.conf import settings

    from accounts import tokens
    from accounts.models import User
    from generations.models import Route
    from generations.providers_setup import configure_providers

    sandbox_port, web_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    settings.NANOWEB_SANDBOX_URL = sandbox_url
    os.environ["NANOWEB_SANDBOX_URL"] = sandbox_url
    configure_providers()
    upstream_model = Route.objects.filter(model__slug="sandbox").first().upstream_model
    user = User.objects.create_user(
        email="bench@example.com",
        daily_image_limit=None,
        monthly_budget_micros=None,
        max_concurrent_jobs=None,
    )
    token = tokens.create(user, "benchmark").secret
    return var, sandbox_port, web_port, upstream_model, user, token


def run(args: argparse.Namespace) -> dict:
    var, sandbox_port, web_port, upstream_model, user, token = prepare("api")
    from accounts import quotas
    from generations.models import Generation

    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    web_url = f"http://127.0.0.1:{web_port}"

    worker = web = sandbox = None
    levels = []
    try:
        worker = start_worker(var, max(args.concurrency))
        web = start_process(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "nanoweb.asgi:application",
                "-k",
                "uvicorn_worker.UvicornWorker",
                "--bind",
                f"127.0.0.1:{web_port}",
                "--workers",
                str(args.web_workers),
                "--timeout",
                "120",
            ],
            var / "web.log",
            lambda: answers(web_url + "/healthz"),
            what="web server",
        )
        for latency in args.latencies:
            sandbox = start_process(
                [
                    sys.executable,
                    "manage.py",
                    "sandbox_upstream",
                    "--port",
                    str(sandbox_port),
                    "--latency",
                    f"{latency:g}",
                ],
                var / f"sandbox-{latency:g}.log",
                lambda: answers(sandbox_url + "/"),
                what="sandbox upstream",
            )
            direct, api = direct_sender(sandbox_url, upstream_model), api_sender(web_url, token)
            # Warm up: every Celery process and web worker handles a first request slowly
            # (imports, database connection), which is not what a running instance does.
            warm = max(args.concurrency)
            asyncio.run(load(api, warm, warm * 2))
            for concurrency in args.concurrency:
                total = concurrency * args.rounds if concurrency > 1 else (10 if latency else 30)
                d = asyncio.run(load(direct, concurrency, total))
                a = asyncio.run(load(api, concurrency, total))
                levels.append(
                    {
                        "latency_s": latency,
                        "concurrency": concurrency,
                        "direct": d,
                        "api": a,
                        "added_ms": {
                            q: round(a[f"{q}_ms"] - d[f"{q}_ms"], 1) for q in ("p50", "p95", "p99")
                        },
                    }
                )
                print_level(levels[-1])
            stop(sandbox)
            sandbox = None
    finally:
        for proc in (sandbox, web, worker):
            stop(proc)

    rows = Generation.objects.all()
    summary = quotas.summary(user)
    spent = sum(g.actual_micros or 0 for g in rows if g.status == Generation.SUCCEEDED)
    return {
        **describe_services(),
        "cpus": os.cpu_count(),
        "web_workers": args.web_workers,
        "celery_processes": max(args.concurrency),
        "rounds": args.rounds,
        "levels": levels,
        "jobs": rows.count(),
        "jobs_not_succeeded": rows.exclude(status=Generation.SUCCEEDED).count(),
        "ledger_problems": len(quotas.ledger_problems()),
        "ledger_drift_micros": abs(summary.spent_month - spent) + summary.reserved_month,
    }


def print_level(level: dict) -> None:
    d, a, added = level["direct"], level["api"], level["added_ms"]
    errors = sum(d["errors"].values()) + sum(a["errors"].values())
    print(
        f"{level['latency_s']:>7g} s {level['concurrency']:>5}  "
        f"{d['p50_ms']:>7.0f} {d['p95_ms']:>7.0f} {d['p99_ms']:>7.0f}   "
        f"{a['p50_ms']:>7.0f} {a['p95_ms']:>7.0f} {a['p99_ms']:>7.0f}   "
        f"{added['p50']:>7.0f} {added['p95']:>7.0f} {added['p99']:>7.0f}   "
        f"{a['req_per_s']:>6.1f} {d['req_per_s']:>6.1f}  {errors:>6}",
        flush=True,
    )


def print_header(args: argparse.Namespace) -> None:
    print(
        f"\nnanoweb API benchmark{' (quick)' if args.quick else ''}: sandbox 1024×1024 "
        f"images as b64_json; gunicorn × {args.web_workers} uvicorn workers, "
        f"{max(args.concurrency)} Celery processes, {os.cpu_count()} CPUs"
    )
    print(
        f"{'':>9} {'':>5}  {'direct (ms)':^23}   {'API (ms)':^23}   {'added (ms)':^23}   "
        f"{'req/s':^13}"
    )
    print(
        f"{'latency':>9} {'conc.':>5}  "
        + "   ".join(f"{'p50':>7} {'p95':>7} {'p99':>7}" for _ in range(3))
        + f"   {'API':>6} {'direct':>6}  {'errors':>6}",
        flush=True,
    )


def report(result: dict, args: argparse.Namespace) -> bool:
    print(
        f"\n{result['database']} + {result['broker']} broker; {result['jobs']} jobs, "
        f"{result['jobs_not_succeeded']} not succeeded\n"
    )
    checks = []
    for level in result["levels"]:
        if level["concurrency"] != max(args.concurrency):
            continue
        tag = f"{level['latency_s']:g} s, c={level['concurrency']}"
        added = level["added_ms"]
        errors = sum(level["direct"]["errors"].values()) + sum(level["api"]["errors"].values())
        checks += [
            (f"p50 added ({tag})", f"{added['p50']:.0f} ms", "≤ 50 ms", added["p50"] <= 50),
            (f"p99 added ({tag})", f"{added['p99']:.0f} ms", "≤ 200 ms", added["p99"] <= 200),
            (f"errors ({tag})", str(errors), "0", errors == 0),
        ]
    drift = f"{result['ledger_drift_micros']} + {result['ledger_problems']}"
    checks.append(
        (
            "ledger drift (µ$) + problems",
            drift,
            "0 + 0",
            result["ledger_drift_micros"] == 0 and result["ledger_problems"] == 0,
        )
    )
    passed = print_checks(checks)
    services = (
        "" if result["database"] == "sqlite3" else f"-{result['database']}-{result['broker']}"
    )
    write_results(
        f"api{'-quick' if args.quick else ''}{services}", {**result, "passed": passed}, args.output
    )
    return passed


if __name__ == "__main__":
    arguments = parse_args()
    print_header(arguments)
    sys.exit(0 if report(run(arguments), arguments) else 1)
