"""POST /hooks/<kind>/<token>: only a signed, fresh, first delivery wakes a job, and it
only wakes it (the job fetches the result itself). Everything else is a 4xx that
changes nothing."""

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from generations import queue
from generations.models import Generation, Provider, WebhookDelivery
from tests.factories import make_route, make_user, submit_one

pytestmark = pytest.mark.django_db

SECRET = "whsec_" + base64.b64encode(b"a webhook signing key of 32 byte").decode()


def signed(body: bytes, *, delivery="msg_1", stamp=None, secret=SECRET) -> dict:
    stamp = str(int(time.time()) if stamp is None else stamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "HTTP_WEBHOOK_ID": delivery,
        "HTTP_WEBHOOK_TIMESTAMP": stamp,
        "HTTP_WEBHOOK_SIGNATURE": "v1," + base64.b64encode(mac).decode(),
    }


@pytest.fixture
def waiting(monkeypatch):
    """A job waiting at Replicate on prediction p-1, and what the broker was sent."""
    woken = []
    monkeypatch.setattr(queue, "enqueue", lambda ids, countdown=None: woken.extend(ids))
    route = make_route(
        "nano-banana",
        kind="replicate",
        provider_name="Replicate",
        base_url="https://api.replicate.com/v1",
        upstream="google/nano-banana",
        prices={"per_image": {"default": 39000}},
    )
    provider = route.provider
    provider.webhooks = True
    provider.set_webhook_secret(SECRET)
    provider.save()
    job = submit_one(route.model, make_user("alice@example.com"))
    later = timezone.now() + timedelta(seconds=60)
    Generation.objects.filter(pk=job.pk).update(
        upstream_id="p-1",
        upstream_job={"id": "p-1", "urls": {}, "route": route.pk, "key": 1, "price": None},
        next_attempt_at=later,
    )
    woken.clear()
    return provider, job, woken


def hook(client, provider, body: bytes, **headers):
    url = reverse("generations:webhook", args=[provider.kind, provider.webhook_token])
    return client.post(url, body, content_type="application/json", **headers)


def body_for(prediction="p-1") -> bytes:
    return json.dumps({"id": prediction, "status": "succeeded", "output": "x"}).encode()


def assert_untouched(job) -> None:
    job.refresh_from_db()
    assert job.next_attempt_at > timezone.now() + timedelta(seconds=30)


def test_a_signed_delivery_wakes_the_waiting_job_once(
    client, waiting, django_capture_on_commit_callbacks
):
    provider, job, woken = waiting
    body = body_for()
    with django_capture_on_commit_callbacks(execute=True):
        response = hook(client, provider, body, **signed(body))
    assert response.status_code == 200 and response.json() == {"ok": True, "woken": 1}
    job.refresh_from_db()
    assert job.next_attempt_at <= timezone.now() and woken == [job.pk]
    assert job.status == "queued" and job.upstream_job  # only woken: the poll fetches it

    again = hook(client, provider, body, **signed(body))  # the same delivery, replayed
    assert again.status_code == 409
    assert WebhookDelivery.objects.count() == 1 and woken == [job.pk]


@pytest.mark.parametrize(
    "tamper",
    ["bad signature", "wrong secret", "old timestamp", "future timestamp", "no headers"],
)
def test_a_delivery_that_does_not_hold_is_refused_and_changes_nothing(client, waiting, tamper):
    provider, job, woken = waiting
    body = body_for()
    headers = {
        "bad signature": {**signed(body), "HTTP_WEBHOOK_SIGNATURE": "v1,AAAA"},
        "wrong secret": signed(
            body, secret="whsec_" + base64.b64encode(b"someone else's key").decode()
        ),
        "old timestamp": signed(body, stamp=int(time.time()) - 3600),
        "future timestamp": signed(body, stamp=int(time.time()) + 3600),
        "no headers": {},
    }[tamper]
    response = hook(client, provider, body, **headers)
    assert response.status_code == 401
    assert "signature" in response.json()["error"]
    assert_untouched(job)
    assert not woken and not WebhookDelivery.objects.exists()


def test_a_signed_body_altered_on_the_way_is_refused(client, waiting):
    provider, job, woken = waiting
    headers = signed(body_for())
    response = hook(client, provider, body_for("p-2"), **headers)
    assert response.status_code == 401
    assert_untouched(job)


def test_unknown_tokens_kinds_and_methods_are_not_found(client, waiting):
    provider, job, _woken = waiting
    body = body_for()
    wrong = reverse("generations:webhook", args=["replicate", "not-the-token"])
    assert (
        client.post(wrong, body, content_type="application/json", **signed(body)).status_code == 404
    )
    other_kind = reverse("generations:webhook", args=["gemini", provider.webhook_token])
    assert client.post(other_kind, body, content_type="application/json").status_code == 404
    url = reverse("generations:webhook", args=[provider.kind, provider.webhook_token])
    assert client.get(url).status_code == 405
    Provider.objects.filter(pk=provider.pk).update(webhooks=False)
    assert hook(client, provider, body, **signed(body, delivery="msg_2")).status_code == 404
    assert_untouched(job)


def test_a_delivery_for_a_request_already_seen_through_is_fine(client, waiting):
    provider, job, woken = waiting
    body = body_for("p-unknown")
    response = hook(client, provider, body, **signed(body))
    assert response.status_code == 200 and response.json()["woken"] == 0
    assert not woken


def test_a_huge_or_garbled_length_is_refused(client, waiting):
    provider, _job, _woken = waiting
    url = reverse("generations:webhook", args=[provider.kind, provider.webhook_token])
    response = client.post(url, b"{}", content_type="application/json", CONTENT_LENGTH="x")
    assert response.status_code in (400, 413)
