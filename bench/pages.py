"""Page benchmark: server time and query counts of the pages people open every day.

A scratch instance holds one person with 10,000 images and 100 other people (with
images of their own, some shared with the team). Each page is requested in-process
through Django's test client (middleware, sessions, templates, database: everything
but the network), signed in as that person:

* studio (``/``), gallery first page, gallery next page (htmx, by cursor), search
  (a common word, and a word nothing matches, which walks every row), the team
  gallery, and the page-level poller asked about 20 jobs in flight;
* server time p50 / p95 per page — target p95 ≤ 50 ms;
* queries per page with 1,000 and with 10,000 images — must be equal.

    .venv/bin/python bench/pages.py            # 10,000 images, 200 requests per page
    .venv/bin/python bench/pages.py --quick    # 10,000 images, 40 requests per page
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import timedelta
from pathlib import Path

from common import describe_services, print_checks, scratch_instance, write_results

TARGET_P95_MS = 50.0
# The page-level poller, asked about 20 cards in flight whose state the page has not
# seen yet (the worst case: every card comes back as an out-of-band swap).
POLLER_URL_NAME = "generations:live"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="40 requests per page")
    p.add_argument("--requests", type=int, help="requests per page (default 200, quick 40)")
    p.add_argument("--images", type=int, default=10_000, help="the person's images")
    p.add_argument("--output", type=Path, help="JSON path (default bench/results/pages.json)")
    args = p.parse_args()
    args.requests = args.requests or (40 if args.quick else 200)
    return args


def populate(images: int):
    """The person (in a team with the 100 others) and the others' images; returns the person."""
    from django.utils import timezone

    from accounts.models import Team, User
    from generations.providers_setup import configure_providers
    from tests.factories import make_images

    configure_providers()  # the sandbox routes, so the studio has a model
    team = Team.objects.create(name="Bench team")
    person = User.objects.create(
        email="bench@example.com", name="Bench", team=team, password="!", monthly_budget_micros=None
    )
    others = User.objects.bulk_create(
        [
            User(email=f"other{i}@example.com", name=f"Other {i}", team=team, password="!")
            for i in range(100)
        ]
    )
    start = timezone.now() - timedelta(days=400)
    for i, other in enumerate(others):
        make_images(other, 20, prompt=f"other {i} image {{i}}", start=start, shared=i % 4 == 0)
    return person


def add_images(person, count: int, *, days_back: int) -> None:
    from django.utils import timezone

    from tests.factories import make_images

    start = timezone.now() - timedelta(days=days_back)
    make_images(person, count, prompt="a study of light, number {i}", start=start, step_seconds=30)


def add_in_flight_jobs(person, count: int = 20) -> None:
    from django.utils import timezone

    from accounts.periods import quota_day
    from generations.models import Generation, ModelSpec

    model = ModelSpec.objects.get(slug="sandbox")
    now = timezone.now()
    Generation.objects.bulk_create(
        [
            Generation(
                user=person,
                team=person.team,
                model=model,
                request_id=uuid.uuid4(),
                prompt=f"in flight {i}",
                aspect_ratio="1:1",
                image_size="1K",
                status=Generation.RUNNING if i % 2 else Generation.QUEUED,
                stage="generating" if i % 2 else "queued",
                quota_day=quota_day(now),
                reserved_micros=40_000,
                deadline=now + timedelta(minutes=10),
                started=now if i % 2 else None,
                created=now,
            )
            for i in range(count)
        ]
    )


def poller_url() -> str | None:
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse(POLLER_URL_NAME)
    except NoReverseMatch:
        return None


def pages(client) -> dict[str, tuple[str, dict]]:
    """name → (url, headers); the next page's cursor comes from the first page."""
    import re

    first = client.get("/gallery").content.decode()
    cursor = re.search(r"cursor=([A-Za-z0-9_-]+)", first).group(1)
    htmx = {"HTTP_HX_REQUEST": "true"}
    found = {
        "studio": ("/", {}),
        "gallery first page": ("/gallery", {}),
        "gallery next page": (f"/gallery?cursor={cursor}", htmx),
        "search": ("/gallery?q=light", {**htmx, "HTTP_HX_TARGET": "gallery-results"}),
        "search, no match": ("/gallery?q=zebra", {**htmx, "HTTP_HX_TARGET": "gallery-results"}),
        "team gallery": ("/gallery?shared=team", {}),
    }
    if url := poller_url():
        from generations.models import Generation

        cards = ",".join(
            f"{pk}:stale" for pk in Generation.objects.in_flight().values_list("pk", flat=True)[:20]
        )
        found["poller, 20 in flight"] = (f"{url}?cards={cards}&quota=1", htmx)
    return found


def count_queries(client, url: str, headers: dict) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **headers)
    assert response.status_code == 200, (url, response.status_code)
    return len(ctx)


def time_page(client, url: str, headers: dict, n: int) -> list[float]:
    for _ in range(3):  # warm caches and connections
        client.get(url, **headers)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.get(url, **headers)
        if response.streaming:
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    args = parse_args()
    var = scratch_instance("pages")
    from django.test import Client, override_settings

    plain_static = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(
        STORAGES=plain_static, ALLOWED_HOSTS=["*"], MEDIA_ROOT=str(var / "media")
    ):
        person = populate(args.images)
        add_in_flight_jobs(person)
        client = Client()
        client.force_login(person)

        first_batch = min(1000, args.images)
        add_images(person, first_batch, days_back=2)
        queries_small = {
            name: count_queries(client, url, h) for name, (url, h) in pages(client).items()
        }
        add_images(person, args.images - first_batch, days_back=200)
        targets = pages(client)
        queries_large = {name: count_queries(client, url, h) for name, (url, h) in targets.items()}

        timings = {}
        for name, (url, headers) in targets.items():
            times = time_page(client, url, headers, args.requests)
            timings[name] = {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(percentile(times, 95), 2),
                "max_ms": round(max(times), 2),
            }

    print(
        f"\n{args.images:,} images for one person, 100 others; {args.requests} requests "
        f"per page; {describe_services()}\n"
    )
    big = "@" + format(args.images, ",")
    print(f"{'page':<22} {'p50 ms':>8} {'p95 ms':>8} {'queries @1k':>12} {big:>8}")
    for name, t in timings.items():
        print(
            f"{name:<22} {t['p50_ms']:>8.1f} {t['p95_ms']:>8.1f} "
            f"{queries_small[name]:>12} {queries_large[name]:>8}"
        )
    if poller_url() is None:
        print(f"\n(poller not measured: no URL named {POLLER_URL_NAME!r} in this tree)")
    print()
    checks = [
        (
            f"{name} p95",
            f"{t['p95_ms']:.1f} ms",
            f"≤ {TARGET_P95_MS:.0f} ms",
            t["p95_ms"] <= TARGET_P95_MS,
        )
        for name, t in timings.items()
    ]
    checks += [
        (
            f"{name} queries",
            f"{queries_small[name]} → {queries_large[name]}",
            "equal",
            queries_small[name] == queries_large[name],
        )
        for name in timings
    ]
    ok = print_checks(checks)
    write_results(
        "pages",
        {
            "images": args.images,
            "other_users": 100,
            "requests_per_page": args.requests,
            "services": describe_services(),
            "timings": timings,
            "queries": {"at_1000": queries_small, f"at_{args.images}": queries_large},
            "poller_measured": poller_url() is not None,
            "all_targets_met": ok,
        },
        args.output,
    )


if __name__ == "__main__":
    main()
