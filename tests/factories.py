"""Tiny plain helpers to build domain objects in tests (no fixture framework)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from PIL import Image as PILImage

from accounts.models import User, usd_to_micros
from generations.catalog import GEMINI_PRICES, LIST_PRICES_FROM, MODELS
from generations.images import clean_image
from generations.jobs import JobRequest
from generations.models import ModelSpec, Price, Provider, ProviderKey, Route
from generations.providers_setup import configure_providers

REPO = Path(__file__).resolve().parent.parent
# Real recorded Gemini image responses (large base64 bodies, thought signatures, usage).
GEMINI_FIXTURES = REPO / "tests" / "fixtures" / "gemini"


def make_user(email: str, *, team=None, password="correct horse battery", **limits) -> User:
    limits.setdefault("daily_image_limit", 50)
    limits.setdefault("monthly_budget_micros", usd_to_micros(20))
    limits.setdefault("max_concurrent_jobs", None)
    limits.setdefault("uses_team_limits", False)  # tests set a person's own limits
    return User.objects.create_user(email=email, password=password, team=team, **limits)


def route_sandbox(url: str, settings):
    """Point the Sandbox model at a running sandbox upstream, as start-up would."""
    settings.NANOWEB_SANDBOX = "on"
    settings.NANOWEB_SANDBOX_URL = url
    settings.GEMINI_API_KEY = ""
    configure_providers()
    return ModelSpec.objects.get(slug="sandbox")


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    host, port = s["HOST"] or "localhost", s["PORT"] or 5432
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{host}:{port}/{s['NAME']}"


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or "condition not met in time")


def wait_in_page(page, expression: str, arg=None, timeout: float = 30_000):
    """Like Playwright's ``wait_for_function``, which compiles its predicate with ``eval``
    inside the page — refused there by nanoweb's Content-Security-Policy. This asks the
    page from outside (``evaluate`` is not subject to the page's policy) until it is true."""
    return wait_for(
        lambda: page.evaluate(expression, arg),
        timeout=timeout / 1000,
        interval=0.1,
        message=f"never true in the page: {expression}",
    )


def shot(page, name: str) -> None:
    """A screenshot of what the browser shows, in var/test/screenshots/."""
    folder = Path(settings.VAR_DIR) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / f"{name}.png")


def make_route(
    model_slug: str = "nano-banana",
    *,
    base_url: str = "http://127.0.0.1:9",
    upstream: str | None = None,
    priority: int = 10,
    price: bool = True,
    provider_name: str = "Test upstream",
    key: str = "test-key-0123456789",
    kind: str = "gemini",
    prices: dict | None = None,
) -> Route:
    model = ModelSpec.objects.get(slug=model_slug)
    upstream = upstream or next(m["upstream"] for m in MODELS if m["slug"] == model_slug)
    provider, _ = Provider.objects.get_or_create(
        name=provider_name, defaults={"kind": kind, "base_url": base_url}
    )
    if not provider.keys.exists():
        k = ProviderKey(provider=provider, label="primary")
        k.set_key(key)
        k.save()
    route = Route.objects.create(
        model=model, provider=provider, upstream_model=upstream, priority=priority
    )
    if price:
        Price.objects.create(
            route=route, effective_from=LIST_PRICES_FROM, **(prices or GEMINI_PRICES[upstream])
        )
    return route


def png_bytes(width: int = 64, height: int = 48, color=(200, 80, 40)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def job_request(model: ModelSpec, **kwargs) -> JobRequest:
    kwargs.setdefault("prompt", "a lighthouse at dusk")
    kwargs.setdefault("aspect_ratio", "1:1")
    kwargs.setdefault("image_size", model.default_size())
    refs = kwargs.pop("reference_bytes", [])
    kwargs.setdefault("references", [clean_image(b) for b in refs])
    return JobRequest(model=model, **kwargs)


def submit_one(model: ModelSpec, user, **kwargs):
    """Admit one job (as the studio would) and return its Generation."""
    from generations.jobs import submit

    return submit(user, job_request(model, **kwargs))[0]


# --- Gallery: finished images made directly in the database (no upstream call) ---


def _gallery_model() -> ModelSpec:
    return ModelSpec.objects.get(slug="sandbox")


def _succeeded_generation(
    user,
    *,
    prompt: str,
    model: ModelSpec,
    created,
    parent=None,
    actual_micros: int = 38_820,
    aspect_ratio: str = "1:1",
):
    import uuid

    from accounts.periods import quota_day
    from generations.models import Generation

    return Generation(
        user=user,
        team=user.team,
        model=model,
        request_id=uuid.uuid4(),
        prompt=prompt,
        aspect_ratio=aspect_ratio,
        image_size=model.default_size() or "",
        parent_image=parent,
        status=Generation.SUCCEEDED,
        quota_day=quota_day(created),
        reserved_micros=actual_micros,
        actual_micros=actual_micros,
        deadline=created,
        created=created,
        started=created,
        finished=created,
    )


def make_image(
    user,
    prompt: str = "a lighthouse at dusk",
    *,
    model: ModelSpec | None = None,
    created=None,
    parent=None,
    starred=False,
    shared=False,
    color=(200, 80, 40),
):
    """One succeeded generation with its image (a small real PNG and WebP thumbnail)."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from generations.images import make_thumbnail
    from generations.models import Image

    created = created or timezone.now()
    gen = _succeeded_generation(
        user, prompt=prompt, model=model or _gallery_model(), created=created, parent=parent
    )
    gen.save()
    data = png_bytes(64, 64, color)
    image = Image(
        generation=gen,
        user=user,
        mime_type="image/png",
        bytes=len(data),
        sha256=clean_image(data).sha256,
        starred=starred,
        shared_with_team=shared,
        created=created,
    )
    image.file.save(f"{gen.pk.hex}.png", ContentFile(data), save=False)
    image.thumbnail.save(f"{gen.pk.hex}.webp", ContentFile(make_thumbnail(data)), save=False)
    image.width, image.height = 64, 64
    image.save()
    return image


def make_images(
    user,
    count: int,
    *,
    prompt: str = "image number {i}",
    model=None,
    start=None,
    step_seconds: int = 60,
    shared=False,
) -> None:
    """Many images in bulk (benchmarks, infinite scroll): rows share one tiny file each."""
    from datetime import timedelta

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from generations.images import make_thumbnail
    from generations.models import Generation, Image

    model = model or _gallery_model()
    start = start or timezone.now() - timedelta(seconds=step_seconds * count)
    data = png_bytes(32, 32)
    file_name = default_storage.save("images/bulk/shared.png", ContentFile(data))
    thumb_name = default_storage.save("thumbs/bulk/shared.webp", ContentFile(make_thumbnail(data)))
    for offset in range(0, count, 1000):
        batch = range(offset, min(count, offset + 1000))
        gens = [
            _succeeded_generation(
                user,
                prompt=prompt.format(i=i + 1),
                model=model,
                created=start + timedelta(seconds=step_seconds * i),
            )
            for i in batch
        ]
        Generation.objects.bulk_create(gens)
        Image.objects.bulk_create(
            [
                Image(
                    generation=g,
                    user=user,
                    file=file_name,
                    thumbnail=thumb_name,
                    width=32,
                    height=32,
                    mime_type="image/png",
                    bytes=len(data),
                    sha256="0" * 64,
                    shared_with_team=shared,
                    created=g.created,
                )
                for g in gens
            ]
        )


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def page_text(html: str | bytes) -> str:
    """What a person reads on a page or fragment: its text without markup, spaces
    collapsed (so tests say "2 queued", not which tags hold the number)."""
    parser = _Text()
    parser.feed(html.decode() if isinstance(html, bytes) else html)
    return re.sub(r"\s+", " ", " ".join(parser.parts)).strip()


def start_celery(args: list[str], env: dict, log: Path, ready: str, what: str):
    """Start ``celery -A nanoweb *args`` in its own process group, logging to ``log``,
    and wait until the log says ``ready``."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "nanoweb", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while ready not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"Celery {what} did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return proc


def kill_groups(procs) -> None:
    """The test is over: no graceful shutdown to wait for (a Celery worker's warm one
    takes about five seconds). Each process group goes, forked children included."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
