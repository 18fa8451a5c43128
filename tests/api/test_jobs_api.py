"""The native jobs API: 202 at once, polling, cursor pages, idempotency, cancel."""

import base64
import threading

import pytest
from django.db import connection

from accounts import quotas, tokens
from accounts.models import LedgerEntry
from generations.api import waiting
from generations.models import Generation, IdempotencyKey
from tests.factories import job_request, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, alice, sandbox_model, no_broker):
    raw = tokens.create(alice, "jobs").secret

    def call(method, path, body=None, **headers):
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if method == "get":
            return client.get(path, HTTP_AUTHORIZATION=f"Bearer {raw}", **extra)
        return client.post(
            path,
            body or {},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
            **extra,
        )

    return call


def test_it_accepts_at_once_and_reports_progress(api, alice):
    r = api(
        "post",
        "/api/v1/generations",
        {"prompt": "a fox", "model": "sandbox", "aspect_ratio": "16:9", "image_size": "2K", "n": 2},
    )
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "queued" and body["n"] == 2 and body["counts"]["queued"] == 2
    assert body["aspect_ratio"] == "16:9" and body["image_size"] == "2K"
    assert all(float(i["reserved_usd"]) > 0 and i["url"] is None for i in body["images"])
    got = api("get", f"/api/v1/generations/{body['id']}").json()
    assert got["id"] == body["id"] and [i["id"] for i in got["images"]] == [
        i["id"] for i in body["images"]
    ]
    assert set(Generation.objects.values_list("source", flat=True)) == {"api"}


def test_the_same_idempotency_key_returns_the_same_request(api, alice):
    first = api("post", "/api/v1/generations", {"prompt": "a fox"}, idempotency_key="k-1")
    again = api("post", "/api/v1/generations", {"prompt": "a fox"}, idempotency_key="k-1")
    other = api("post", "/api/v1/generations", {"prompt": "a fox"}, idempotency_key="k-2")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert Generation.objects.count() == 2
    assert LedgerEntry.objects.filter(kind="reserve").count() == 2


@pytest.mark.django_db(transaction=True)
def test_racing_requests_with_one_key_make_one_request(alice, sandbox_model, no_broker):
    barrier, seen, errors = threading.Barrier(8), [], []

    def attempt():
        try:
            barrier.wait()
            gens, _ = waiting.submit(alice, job_request(sandbox_model), idempotency_key="same")
            seen.append(gens[0].request_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(seen) == 8 and len(set(seen)) == 1
    assert Generation.objects.count() == 1 and IdempotencyKey.objects.count() == 1
    assert quotas.ledger_problems() == []


def test_a_refused_request_frees_its_idempotency_key(api, alice):
    alice.daily_image_limit = 0
    alice.save()
    r = api("post", "/api/v1/generations", {"prompt": "a fox"}, idempotency_key="retry-me")
    assert r.status_code == 429
    assert not IdempotencyKey.objects.exists() and not Generation.objects.exists()


def test_pages_follow_the_cursor_without_gaps_or_repeats(api, alice):
    made = [
        api("post", "/api/v1/generations", {"prompt": f"fox {i}"}).json()["id"] for i in range(5)
    ]
    seen, cursor = [], None
    for _ in range(5):
        page = api("get", "/api/v1/generations?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status_code == 200
        seen += [r["id"] for r in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert seen == made[::-1]
    bad = api("get", "/api/v1/generations?cursor=nonsense")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"


def test_cancel_returns_the_reservation(api, alice):
    body = api("post", "/api/v1/generations", {"prompt": "a fox", "n": 2}).json()
    assert quotas.summary(alice).images_today == 2
    r = api("post", f"/api/v1/generations/{body['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert [(i["status"], i["refunded"], i["cost_usd"]) for i in r.json()["images"]] == [
        ("cancelled", True, "0.000000")
    ] * 2
    assert quotas.summary(alice).images_today == 0 and quotas.summary(alice).reserved_month == 0
    assert LedgerEntry.objects.filter(kind="release").count() == 2
    assert quotas.ledger_problems() == []
    # Cancelling what has finished changes nothing.
    assert api("post", f"/api/v1/generations/{body['id']}/cancel").status_code == 200
    assert LedgerEntry.objects.filter(kind="release").count() == 2


def test_a_started_job_cannot_be_cancelled(api, alice):
    body = api("post", "/api/v1/generations", {"prompt": "a fox"}).json()
    Generation.objects.update(status="running", started=Generation.objects.get().created)
    r = api("post", f"/api/v1/generations/{body['id']}/cancel")
    assert r.status_code == 409 and "Nothing left to cancel" in r.json()["error"]["message"]


def test_other_peoples_requests_are_not_found(api, bob, client):
    body = api("post", "/api/v1/generations", {"prompt": "a fox"}).json()
    raw = tokens.create(bob, "bob").secret
    for method, path in [
        ("get", f"/api/v1/generations/{body['id']}"),
        ("post", f"/api/v1/generations/{body['id']}/cancel"),
    ]:
        r = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (
        client.get("/api/v1/generations", HTTP_AUTHORIZATION=f"Bearer {raw}").json()["data"] == []
    )


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"prompt": ""}, 400, "prompt"),
        ({"prompt": "x", "aspect_ratio": "7:3"}, 400, "aspect_ratio"),
        ({"prompt": "x", "image_size": "8K"}, 400, "image_size"),
        ({"prompt": "x", "n": 0}, 400, "n"),
        ({"prompt": "x", "n": "many"}, 400, "n"),
        ({"prompt": "x", "model": "dall-e-3"}, 404, "model"),
        ({"prompt": "x", "reference_images": ["not base64!"]}, 400, "reference_images[0]"),
        (
            {"prompt": "x", "reference_images": [base64.b64encode(b"<svg/>").decode()]},
            400,
            "reference_images[0]",
        ),
        ({}, 400, "prompt"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(api, body, status, param):
    r = api("post", "/api/v1/generations", body)
    assert r.status_code == status, r.content
    error = r.json()["error"]
    assert error["param"] == param and error["message"]
    assert not Generation.objects.exists() and not LedgerEntry.objects.exists()


def test_reference_images_arrive_as_base64_or_data_urls(api, alice):
    png = base64.b64encode(png_bytes(80, 60)).decode()
    refs = [png, f"data:image/png;base64,{png}"]
    r = api(
        "post", "/api/v1/generations", {"prompt": "the same, in winter", "reference_images": refs}
    )
    assert r.status_code == 202
    assert Generation.objects.get().references.count() == 1  # the same image, stored once


def test_the_openapi_document_and_docs_are_served(client):
    doc = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/generations" in doc["paths"] and "/v1/images/generations" in doc["paths"]
    assert client.get("/api/v1/docs").status_code == 200
