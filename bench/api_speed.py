"""API speed benchmark: what nanoweb adds to the upstream, in time and CPU.

One run, on one machine, against one sandbox upstream that returns real-sized images
(the Sandbox model routes to gemini-3.1-flash-image: a 1024² JPEG as Gemini 3 sends
it, base64 in JSON; its OpenAI Images endpoint returns a ~1.5 MB 1024² PNG):

* **direct** — generateContent straight to the sandbox, the body nanoweb sends;
* **nanoweb** — ``POST /v1/images/generations`` (gunicorn + uvicorn workers, a prefork
  Celery worker and beat, the embedded SQLite + filesystem broker unless
  ``DATABASE_URL`` / ``REDIS_URL`` say otherwise);
* **LiteLLM** — its proxy (installed from PyPI into a scratch venv under the system
  temp dir, never into nanoweb's) in front of the sandbox's OpenAI Images endpoint,
  beside **direct-openai**, that endpoint called straight.

Printed and written as JSON (bench/results/api_speed[-quick][-services].json), with the
load average beside the figures: p50/p99 added latency and req/s per level; CPU per
image summed over every nanoweb process (web, worker, beat: /proc before/after);
queries per image by phase (measured in this process with CaptureQueriesContext);
the time ``clean_image`` takes on the sandbox's 1K JPEG; peak RSS growth of the worker
and web processes that handle a 4K image.

    .venv/bin/python bench/api_speed.py --quick     # ~4 minutes
    .venv/bin/python bench/api_speed.py --no-litellm
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from api import answers, direct_sender, free_port, load, prepare
from common import (
    describe_services,
    print_checks,
    start_process,
    start_worker,
    stop,
    write_results,
)

PROMPT = "a lighthouse on a cliff at dusk, benchmark request"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LITELLM_VENV = Path(tempfile.gettempdir()) / "nanoweb-bench-litellm"
LITELLM_KEY = "sk-bench-" + secrets.token_hex(16)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer requests per level")
    p.add_argument("--latencies", type=float, nargs="+", default=[2.0, 0.0])
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--rounds", type=int, help="requests per client per level (default 4, quick 2)")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--celery-processes", type=int, help="default: the concurrency")
    p.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM side")
    p.add_argument("--output", type=Path)
    args = p.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.celery_processes = args.celery_processes or args.concurrency
    return args


# --- processes: CPU and memory from /proc -------------------------------------------


def session_pids(leader: int) -> list[int]:
    """Every live process in the session ``leader`` started (start_new_session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:
            pids.append(int(entry))
    return pids


def cpu_seconds(leader: int) -> float:
    """User + system CPU of the session's live processes and their reaped children."""
    total = 0
    for pid in session_pids(leader):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peaks(leader: int) -> dict[int, int]:
    """Reset each process's peak RSS (clear_refs 5) → its RSS now, in kB."""
    now = {}
    for pid in session_pids(leader):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            now[pid] = _status_kb(pid, "VmRSS")
        except OSError:
            continue
    return now


def peak_growth_mb(before: dict[int, int]) -> float:
    """The largest peak-RSS growth since :func:`reset_peaks` among those processes."""
    growth = 0
    for pid, rss in before.items():
        try:
            growth = max(growth, _status_kb(pid, "VmHWM") - rss)
        except OSError:
            continue
    return round(growth / 1024, 1)


class Group:
    """The nanoweb processes whose CPU counts: name → session leader pid."""

    def __init__(self, **leaders: int) -> None:
        self.leaders = leaders

    def snapshot(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.leaders.items()}

    @staticmethod
    def per_image(before: dict, after: dict, images: int) -> dict[str, float]:
        per = {k: round((after[k] - before[k]) * 1000 / max(images, 1), 1) for k in before}
        per["total"] = round(sum(per.values()), 1)
        return per


# --- senders ------------------------------------------------------------------------


def nanoweb_sender(web_url: str, token: str, image_size: str = "1K"):
    url = f"{web_url}/v1/images/generations"
    body = {
        "model": "sandbox",
        "prompt": PROMPT,
        "aspect_ratio": "1:1",
        "image_size": image_size,
        "response_format": "b64_json",
    }
    headers = {"Authorization": f"Bearer {token}"}

    async def send(client: httpx.AsyncClient) -> str:
        r = await client.post(url, json=body, headers=headers)
        return "ok" if r.status_code == 200 and b'"b64_json"' in r.content else str(r.status_code)

    return send


def openai_sender(base_url: str, key: str, model: str):
    """An Images call as the openai SDK sends it, to the sandbox or to LiteLLM."""
    url = f"{base_url}/v1/images/generations"
    body = {"model": model, "prompt": PROMPT, "size": "1024x1024", "n": 1}
    headers = {"Authorization": f"Bearer {key}"}

    async def send(client: httpx.AsyncClient) -> str:
        r = await client.post(url, json=body, headers=headers)
        return "ok" if r.status_code == 200 and b'"b64_json"' in r.content else str(r.status_code)

    return send


# --- LiteLLM ------------------------------------------------------------------------


def litellm_binary() -> Path | None:
    """The proxy's executable in the scratch venv, installing it first if need be."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing litellm[proxy] into {LITELLM_VENV} (not nanoweb's venv)…", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
            check=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"LiteLLM skipped: could not install it from PyPI ({exc}).", flush=True)
        return None
    return exe if exe.exists() else None


def start_litellm(var: Path, sandbox_url: str, key: str) -> tuple[subprocess.Popen, str] | None:
    exe = litellm_binary()
    if exe is None:
        return None
    port = free_port()
    config = var / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": "gpt-image-1",
                        "litellm_params": {
                            "model": "openai/gpt-image-1",
                            "api_base": f"{sandbox_url}/v1",
                            "api_key": key,
                        },
                    }
                ],
                "litellm_settings": {"drop_params": True, "telemetry": False},
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    # LiteLLM reads DATABASE_URL (and refuses SQLite): its proxy runs without nanoweb's.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=LITELLM_KEY)  # it refuses to run open
    try:
        proc = start_process(
            [str(exe), "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
            var / "litellm.log",
            lambda: answers(url + "/health/liveliness"),
            what="LiteLLM proxy",
            timeout=180,
            env=env,
        )
    except SystemExit as exc:
        print(f"LiteLLM skipped: {str(exc)[:400]}", flush=True)
        return None
    return proc, url


# --- in-process probes: queries per image, clean_image ------------------------------


def probe_queries(token: str) -> dict:
    """One image through the same functions the web and worker processes run, counting
    queries per phase (broker sends disabled: the job is run here, not by Celery)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts import tokens
    from generations import engine, jobs, queue
    from generations.api import mapping, results, waiting

    sent = queue.enqueue
    queue.enqueue = lambda ids, **kw: None
    counts: dict[str, int] = {}
    try:
        for warm in (True, False):
            phases = {}
            with CaptureQueriesContext(connection) as q:
                user = tokens.authenticate(token, ip="127.0.0.1")
            phases["token"] = len(q)
            with CaptureQueriesContext(connection) as q:
                model = mapping.find_model("sandbox")
                req = jobs.JobRequest(
                    model=model, prompt=PROMPT, aspect_ratio="1:1", image_size="1K", count=1
                )
                gens, _ = waiting.submit(user, req)
            phases["admit"] = len(q)
            with CaptureQueriesContext(connection) as q:
                engine.run_generation(gens[0].pk)
            phases["attempt"] = len(q)
            with CaptureQueriesContext(connection) as q:
                waiting._finished([gens[0].pk])
                done = waiting.refresh([gens[0].pk])
                results.b64(done[0])
            phases["answer"] = len(q)
            if not warm:
                counts = {**phases, "total": sum(phases.values())}
    finally:
        queue.enqueue = sent
    return counts


def probe_clean_image(sandbox_url: str) -> dict:
    """CPU of clean_image (with its thumbnail) on the sandbox's 1K and 4K JPEG."""
    from generations import images
    from generations.providers_setup import SANDBOX_KEY

    out = {}
    for size in ("1K", "4K"):
        r = httpx.post(
            f"{sandbox_url}/v1beta/models/gemini-3.1-flash-image:generateContent",
            json={
                "contents": [{"parts": [{"text": PROMPT}]}],
                "generationConfig": {
                    "responseModalities": ["IMAGE"],
                    "imageConfig": {"aspectRatio": "1:1", "imageSize": size},
                },
            },
            headers={"x-goog-api-key": SANDBOX_KEY},
            timeout=60,
        )
        parts = r.json()["candidates"][0]["content"]["parts"]
        data = base64.b64decode(next(p for p in parts if "inlineData" in p)["inlineData"]["data"])
        runs = 5 if size == "1K" else 2
        started = time.process_time()
        for _ in range(runs):
            clean = images.clean_image(data, thumbnail=True, max_bytes=64 * 1024 * 1024)
        out[size] = {
            "sent_bytes": len(data),
            "stored_bytes": len(clean.data),
            "kept_as_sent": clean.data in data,  # not re-encoded: the scans are the same
            "cpu_ms": round((time.process_time() - started) * 1000 / runs, 1),
        }
    return out


# --- the run ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    var, sandbox_port, web_port, upstream_model, user, token = prepare("api-speed")
    from accounts import quotas
    from generations.models import Generation
    from generations.providers_setup import SANDBOX_KEY

    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    web_url = f"http://127.0.0.1:{web_port}"

    def sandbox(latency: float) -> subprocess.Popen:
        return start_process(
            [sys.executable, "manage.py", "sandbox_upstream", "--port", str(sandbox_port)]
            + ["--latency", f"{latency:g}"],
            var / f"sandbox-{latency:g}.log",
            lambda: answers(sandbox_url + "/"),
            what="sandbox upstream",
        )

    procs: dict[str, subprocess.Popen | None] = {}
    result: dict = {"levels": []}
    try:
        procs["sandbox"] = sandbox(0)
        result["queries_per_image"] = probe_queries(token)
        result["clean_image"] = probe_clean_image(sandbox_url)
        print_probes(result)
        procs["worker"] = start_worker(var, args.celery_processes)
        procs["beat"] = start_process(
            [sys.executable, "-m", "celery", "-A", "nanoweb", "beat", "--loglevel", "INFO"]
            + ["--schedule", str(var / "beat-schedule")],
            var / "beat.log",
            lambda: "beat: Starting" in (var / "beat.log").read_text(),
            what="Celery beat",
        )
        procs["web"] = start_process(
            [sys.executable, "-m", "gunicorn", "nanoweb.asgi:application"]
            + ["-k", "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{web_port}"]
            + ["--workers", str(args.web_workers), "--timeout", "120"],
            var / "web.log",
            lambda: answers(web_url + "/healthz"),
            what="web server",
        )
        nanoweb = Group(web=procs["web"].pid, worker=procs["worker"].pid, beat=procs["beat"].pid)
        if not args.no_litellm:
            started = start_litellm(var, sandbox_url, SANDBOX_KEY)
            if started:
                procs["litellm"], litellm_url = started
        stop(procs.pop("sandbox"))
        for latency in args.latencies:
            procs["sandbox"] = sandbox(latency)
            result["levels"].append(
                run_level(
                    args,
                    latency,
                    nanoweb,
                    procs,
                    sandbox_url,
                    web_url,
                    token,
                    upstream_model,
                    locals().get("litellm_url"),
                )
            )
            if latency == args.latencies[-1]:
                result["rss_4k"] = probe_4k(procs, web_url, token)
                print(f"peak RSS growth for a 4K image (MB): {result['rss_4k']}", flush=True)
            stop(procs.pop("sandbox"))
    finally:
        for proc in procs.values():
            stop(proc)

    rows = Generation.objects.all()
    summary = quotas.summary(user)
    spent = sum(g.actual_micros or 0 for g in rows if g.status == Generation.SUCCEEDED)
    import generations

    return {
        **result,
        **describe_services(),
        "code": str(Path(generations.__file__).resolve().parent.parent),
        "cpus": os.cpu_count(),
        "web_workers": args.web_workers,
        "celery_processes": args.celery_processes,
        "rounds": args.rounds,
        "jobs": rows.count(),
        "jobs_not_succeeded": rows.exclude(status=Generation.SUCCEEDED).count(),
        "ledger_problems": len(quotas.ledger_problems()),
        "ledger_drift_micros": abs(summary.spent_month - spent) + summary.reserved_month,
    }


def run_level(
    args, latency, nanoweb, procs, sandbox_url, web_url, token, upstream_model, litellm_url
) -> dict:
    from generations.providers_setup import SANDBOX_KEY

    c = args.concurrency
    total = c * args.rounds
    api = nanoweb_sender(web_url, token)
    asyncio.run(load(api, c, c * 2))  # warm every web worker and Celery process
    level: dict = {"latency_s": latency, "concurrency": c, "load_before": os.getloadavg()}
    level["direct"] = asyncio.run(load(direct_sender(sandbox_url, upstream_model), c, total))
    before = nanoweb.snapshot()
    level["nanoweb"] = asyncio.run(load(api, c, total))
    level["nanoweb_cpu_ms_per_image"] = Group.per_image(
        before, nanoweb.snapshot(), level["nanoweb"]["ok"]
    )
    if litellm_url:
        level["direct_openai"] = asyncio.run(
            load(openai_sender(sandbox_url, SANDBOX_KEY, "gpt-image-1"), c, total)
        )
        sender = openai_sender(litellm_url, LITELLM_KEY, "gpt-image-1")
        asyncio.run(load(sender, c, c))
        lite = Group(litellm=procs["litellm"].pid)
        before = lite.snapshot()
        level["litellm"] = asyncio.run(load(sender, c, total))
        level["litellm_cpu_ms_per_request"] = Group.per_image(
            before, lite.snapshot(), level["litellm"]["ok"]
        )
    level["load_after"] = os.getloadavg()
    for name, base in (("nanoweb", "direct"), ("litellm", "direct_openai")):
        if name in level:
            level[f"{name}_added_ms"] = {
                q: round(level[name][f"{q}_ms"] - level[base][f"{q}_ms"], 1) for q in ("p50", "p99")
            }
            level[f"{name}_throughput_ratio"] = round(
                level[name]["req_per_s"] / max(level[base]["req_per_s"], 1e-9), 3
            )
    print_level(level)
    return level


def probe_4k(procs, web_url: str, token: str) -> dict:
    """Peak RSS growth of the worker and web processes while one 4K image goes through."""
    worker, web = reset_peaks(procs["worker"].pid), reset_peaks(procs["web"].pid)
    outcome = asyncio.run(load(nanoweb_sender(web_url, token, "4K"), 1, 1))
    return {
        "ok": outcome["ok"] == 1,
        "worker_mb": peak_growth_mb(worker),
        "web_mb": peak_growth_mb(web),
    }


# --- output -------------------------------------------------------------------------


def print_probes(result: dict) -> None:
    q = result["queries_per_image"]
    print("queries per image: " + ", ".join(f"{k} {v}" for k, v in q.items()))
    for size, c in result["clean_image"].items():
        print(
            f"clean_image {size} JPEG: {c['cpu_ms']} ms CPU, {c['sent_bytes']} → "
            f"{c['stored_bytes']} bytes, kept as sent: {c['kept_as_sent']}"
        )
    print(flush=True)


def print_level(level: dict) -> None:
    load1 = level["load_before"][0]
    print(
        f"\nupstream latency {level['latency_s']:g} s, {level['concurrency']} callers "
        f"(load average {load1:.2f} before, {level['load_after'][0]:.2f} after)"
    )
    print(
        f"{'':<14} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10} "
        f"{'req/s':>7} {'ratio':>6} {'errors':>6}"
    )
    for name in ("direct", "nanoweb", "direct_openai", "litellm"):
        if name not in level:
            continue
        r = level[name]
        added = level.get(f"{name}_added_ms", {})
        ratio = level.get(f"{name}_throughput_ratio")
        print(
            f"{name:<14} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} "
            f"{added.get('p50', ''):>10} {added.get('p99', ''):>10} {r['req_per_s']:>7.1f} "
            f"{ratio if ratio is not None else '':>6} {sum(r['errors'].values()):>6}"
        )
    cpu = level["nanoweb_cpu_ms_per_image"]
    print("nanoweb CPU ms per image: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    if "litellm_cpu_ms_per_request" in level:
        print(f"LiteLLM CPU ms per request: {level['litellm_cpu_ms_per_request']['total']}")
    print(flush=True)


def report(result: dict, args: argparse.Namespace) -> bool:
    print(
        f"\n{result['database']} + {result['broker']} broker, code from {result['code']}; "
        f"{result['jobs']} jobs, {result['jobs_not_succeeded']} not succeeded\n"
    )
    checks = []
    for level in result["levels"]:
        tag = f"{level['latency_s']:g} s"
        added, n = level["nanoweb_added_ms"], level["nanoweb"]
        errors = sum(n["errors"].values())
        checks.append((f"errors ({tag})", str(errors), "0", errors == 0))
        if level["latency_s"] > 0:
            ratio = level["nanoweb_throughput_ratio"]
            checks += [
                (f"p50 added ({tag})", f"{added['p50']:.0f} ms", "≤ 50 ms", added["p50"] <= 50),
                (f"p99 added ({tag})", f"{added['p99']:.0f} ms", "≤ 200 ms", added["p99"] <= 200),
                (f"throughput / direct ({tag})", f"{ratio:.2f}", "≥ 0.95", ratio >= 0.95),
            ]
        else:
            rate = n["req_per_s"]
            checks.append((f"images/s ({tag})", f"{rate:.1f}", "≥ 45", rate >= 45))
        cpu = level["nanoweb_cpu_ms_per_image"]["total"]
        checks.append((f"CPU per image ({tag})", f"{cpu:.0f} ms", "≤ 30 ms", cpu <= 30))
    if "rss_4k" in result:
        rss = max(result["rss_4k"]["worker_mb"], result["rss_4k"]["web_mb"])
        checks.append(("peak RSS growth, 4K image", f"{rss:.0f} MB", "≤ 64 MB", rss <= 64))
    drift_ok = result["ledger_drift_micros"] == 0 and result["ledger_problems"] == 0
    drift = f"{result['ledger_drift_micros']} + {result['ledger_problems']}"
    checks.append(("ledger drift (µ$) + problems", drift, "0 + 0", drift_ok))
    passed = print_checks(checks)
    services = (
        "" if result["database"] == "sqlite3" else f"-{result['database']}-{result['broker']}"
    )
    name = f"api_speed{'-quick' if args.quick else ''}{services}"
    write_results(name, {**result, "passed": passed}, args.output)
    return passed


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(0 if report(run(arguments), arguments) else 1)
