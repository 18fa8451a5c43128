"""Idempotency-Key on every API that charges: a retried request gets the jobs the first one
paid for — after a dropped connection or a web restart too — and a key sent again with a
different request is refused instead of answering with someone else's images."""

import base64
import datetime as dt
import os
import signal

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts import quotas, tokens
from accounts.models import LedgerEntry
from generations import jobs
from generations.api import waiting
from generations.models import Generation, IdempotencyKey
from tests.factories import job_request, png_bytes, wait_for

RED, BLUE = png_bytes(64, 64, (200, 0, 0)), png_bytes(64, 64, (0, 0, 200))


def reserved() -> int:
    return LedgerEntry.objects.filter(kind=LedgerEntry.RESERVE).count()


@pytest.fixture
def bearer(alice, sandbox_model, no_broker):
    return {"HTTP_AUTHORIZATION": f"Bearer {tokens.create(alice, 'retries').secret}"}


@pytest.mark.django_db
def test_a_used_key_with_another_prompt_is_refused_in_the_openai_envelope(
    client, alice, sandbox_model, bearer
):
    # The first request was admitted, then its connection dropped.
    req = job_request(sandbox_model, prompt="a fox")
    first, _ = waiting.submit(alice, req, idempotency_key="k")
    r = client.post(
        "/v1/images/generations",
        {"model": "sandbox", "prompt": "a wolf"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
        **bearer,
    )
    assert r.status_code == 422, r.content
    error = r.json()["error"]
    assert error["code"] == "idempotency_key_reused" and error["param"] == "Idempotency-Key"
    assert error["type"] == "invalid_request_error" and "different request" in error["message"]
    assert Generation.objects.get() == first[0] and reserved() == 1


@pytest.mark.django_db
def test_a_used_key_with_other_images_is_refused_by_edits(client, alice, sandbox_model, bearer):
    req = job_request(sandbox_model, prompt="recolour", reference_bytes=[RED])
    waiting.submit(alice, req, idempotency_key="edit")
    r = client.post(
        "/v1/images/edits",
        {"model": "sandbox", "prompt": "recolour", "image": _file(BLUE)},
        HTTP_IDEMPOTENCY_KEY="edit",
        **bearer,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
    assert Generation.objects.count() == 1 and reserved() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changed",
    [{"prompt": "a wolf"}, {"n": 2}, {"aspect_ratio": "16:9"}, {"image_size": "2K"}],
)
def test_the_jobs_api_refuses_a_used_key_with_another_request(client, bearer, changed):
    body = {"prompt": "a fox", "model": "sandbox"}
    first = client.post(
        "/api/v1/generations",
        body,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
        **bearer,
    )
    assert first.status_code == 202
    again = client.post(
        "/api/v1/generations",
        {**body, **changed},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
        **bearer,
    )
    assert again.status_code == 422, again.content
    assert again.json()["error"]["code"] == "idempotency_key_reused"
    assert Generation.objects.count() == 1 and reserved() == 1


def _post_jobs(client, bearer, key="k"):
    return client.post(
        "/api/v1/generations",
        {"prompt": "a fox", "model": "sandbox"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
        **bearer,
    )


@pytest.mark.django_db
def test_a_key_left_by_a_request_that_died_before_its_jobs_is_taken_over(client, alice, bearer):
    # Killed between claiming the key and admitting its jobs: nothing was charged.
    IdempotencyKey.objects.create(
        user=alice, key="k", created=timezone.now() - dt.timedelta(minutes=5)
    )
    r = _post_jobs(client, bearer)
    assert r.status_code == 202, r.content
    assert IdempotencyKey.objects.get().request_id == Generation.objects.get().request_id
    assert reserved() == 1
    assert _post_jobs(client, bearer).json()["id"] == r.json()["id"] and reserved() == 1


@pytest.mark.django_db
def test_jobs_a_dying_request_committed_are_given_back_not_bought_again(
    client, alice, sandbox_model, bearer
):
    # Killed after its jobs were committed but before it noted them on its key.
    IdempotencyKey.objects.create(
        user=alice, key="k", created=timezone.now() - dt.timedelta(minutes=5)
    )
    req = job_request(sandbox_model, prompt="a fox", aspect_ratio="1:1")
    req.source = "api"
    made = jobs.submit(alice, req)
    r = _post_jobs(client, bearer)
    assert r.status_code == 202 and r.json()["id"] == str(made[0].request_id)
    assert Generation.objects.count() == 1 and reserved() == 1


def _file(data: bytes, name: str = "ref.png"):
    return SimpleUploadedFile(name, data, content_type="image/png")


@pytest.fixture
def sandbox_url():
    """The upstream takes two seconds, longer than the impatient client below waits."""
    from generations.sandbox.server import SandboxConfig, running_sandbox

    with running_sandbox(SandboxConfig(latency_min=2.0, latency_max=2.0)) as url:
        yield url


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_a_retry_after_a_dropped_connection_and_a_web_restart_is_not_charged_again(
    start_api, start_beat, alice, alice_token
):
    """The first web process runs both first attempts and dies during them: beat's sweep
    hands the jobs to the worker once their lease runs out, and the retries get them."""
    start_beat()
    base, first_server = start_api()
    auth = {"Authorization": f"Bearer {alice_token}"}
    generate = {"model": "sandbox", "prompt": "a lighthouse, retried"}

    def send(base, path, key, timeout=90, **kwargs):
        headers = {**auth, "Idempotency-Key": key}
        return httpx.post(f"{base}{path}", headers=headers, timeout=timeout, **kwargs)

    def edit(base, timeout=90, image=RED):
        files = {"image": ("ref.png", image, "image/png")}
        data = {"model": "sandbox", "prompt": "recolour it"}
        return send(base, "/v1/images/edits", "e-1", timeout, data=data, files=files)

    assert httpx.get(f"{base}/v1/models", headers=auth, timeout=30).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        send(base, "/v1/images/generations", "g-1", timeout=1.2, json=generate)
    with pytest.raises(httpx.ReadTimeout):
        edit(base, timeout=1.2)
    wait_for(lambda: Generation.objects.count() == 2, message="the first requests were lost")
    os.killpg(first_server.pid, signal.SIGKILL)  # the web process dies with them
    first_server.wait()

    base, _ = start_api()
    generated = [send(base, "/v1/images/generations", "g-1", json=generate) for _ in range(2)]
    edited = [edit(base) for _ in range(2)]
    for pair in (generated, edited):
        assert [r.status_code for r in pair] == [200, 200], pair[0].content
        a, b = (r.json()["data"][0]["b64_json"] for r in pair)
        assert a == b and len(base64.b64decode(a)) > 1000
    assert Generation.objects.count() == 2 and reserved() == 2
    assert quotas.summary(alice).images_today == 2 and not quotas.ledger_problems()

    other = send(base, "/v1/images/generations", "g-1", json={**generate, "prompt": "a wolf"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert edit(base, image=BLUE).status_code == 422
    assert Generation.objects.count() == 2 and reserved() == 2
