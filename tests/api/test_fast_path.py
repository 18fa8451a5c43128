"""The synchronous API's fast path: a first attempt runs in the web process.

Measured in bench/api_speed.py; here, what it must keep: the attempt is the same (claim,
lease, permit, settlement, Attempt row, ledger), the worker is not involved when the
first attempt makes the image, and whatever is left — a retry, a call beyond the
process's threads — runs on the worker as before.
"""

from pathlib import Path

import httpx
import pytest

from accounts import quotas
from generations.models import Attempt, Generation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def _post(base, token, prompt, n=1):
    return httpx.post(
        f"{base}/v1/images/generations",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "sandbox", "prompt": prompt, "n": n},
        timeout=90,
    )


def _worker_attempts(settings) -> int:
    """Attempts the worker was sent (its log names the task, not the job)."""
    log = Path(settings.VAR_DIR) / "test-worker-1.log"
    return sum(
        "generations.tasks.run_generation[" in line and line.endswith("received")
        for line in log.read_text().splitlines()
    )


def test_a_first_attempt_that_makes_the_image_never_reaches_the_worker(
    api_server, alice, alice_token, settings
):
    r = _post(api_server, alice_token, "a lighthouse, served in the web process")
    assert r.status_code == 200, r.content
    gen = Generation.objects.get()
    assert gen.status == Generation.SUCCEEDED and gen.attempts == 1
    assert list(Attempt.objects.values_list("outcome", flat=True)) == ["ok"]
    assert gen.image.file and gen.image.thumbnail  # stored with its thumbnail, as always
    assert _worker_attempts(settings) == 0
    assert quotas.summary(alice).images_today == 1 and not quotas.ledger_problems()


def test_a_failed_first_attempt_is_retried_by_a_worker(api_server, alice, alice_token, settings):
    r = _post(api_server, alice_token, "a heron [sandbox:503x1]")
    assert r.status_code == 200, r.content
    gen = Generation.objects.get()
    outcomes = list(gen.attempt_log.order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["transient", "ok"] and gen.status == Generation.SUCCEEDED
    assert _worker_attempts(settings) == 1  # the retry, after its backoff
    assert not quotas.ledger_problems()


def test_calls_beyond_the_web_process_threads_go_to_the_worker(
    start_api, alice, alice_token, settings, monkeypatch
):
    monkeypatch.setenv("NANOWEB_API_INLINE_THREADS", "1")
    base, _ = start_api()
    r = _post(base, alice_token, "two kites", n=2)
    assert r.status_code == 200, r.content
    assert len(r.json()["data"]) == 2
    gens = list(Generation.objects.all())
    assert _worker_attempts(settings) == 1
    assert all(g.status == Generation.SUCCEEDED for g in gens)
    assert quotas.summary(alice).images_today == 2 and not quotas.ledger_problems()
