"""Reference images that cannot be stored (disk full, no permission): every API answers
503 storage_unavailable in its own envelope, the studio says so in words, and nothing is
left behind — no partial file, no upload, no job, no reservation."""

import base64
import errno
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import quotas, tokens
from accounts.models import LedgerEntry
from generations.models import Generation, IdempotencyKey, Upload
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db

RED, BLUE = png_bytes(64, 64, (200, 0, 0)), png_bytes(64, 64, (0, 0, 200))


@pytest.fixture
def disk_full(monkeypatch):
    """Storage that fills up: the ``fail_from``-th file written (0: the first) gets half
    its bytes onto the disk, then ENOSPC, as a real full disk does."""
    real_save = FileSystemStorage._save
    state = {"fail_from": 0, "writes": 0}

    def save(self, name, content):
        state["writes"] += 1
        if state["writes"] <= state["fail_from"]:
            return real_save(self, name, content)
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.read()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", save)
    return state


@pytest.fixture
def token(alice, sandbox_model, no_broker):
    return tokens.create(alice, "storage").secret


def nothing_left(alice, settings) -> None:
    files = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert files == []
    assert not Upload.objects.exists() and not Generation.objects.exists()
    assert not LedgerEntry.objects.exists() and not IdempotencyKey.objects.exists()
    assert quotas.summary(alice).reserved_month == 0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("fail_from", [0, 1], ids=["first image", "second image"])
def test_openai_edits_answer_503_and_leave_nothing(
    client, alice, token, disk_full, settings, fail_from
):
    disk_full["fail_from"] = fail_from
    r = client.post(
        "/v1/images/edits",
        {
            "prompt": "combine them",
            "model": "sandbox",
            "image[]": [
                SimpleUploadedFile("red.png", RED, content_type="image/png"),
                SimpleUploadedFile("blue.png", BLUE, content_type="image/png"),
            ],
        },
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_IDEMPOTENCY_KEY="edit-1",
    )
    assert r.status_code == 503, r.content
    error = r.json()["error"]
    assert error["code"] == "storage_unavailable" and "Nothing was charged" in error["message"]
    assert r["x-should-retry"] == "true" and r["Retry-After"]
    nothing_left(alice, settings)


def test_the_jobs_api_answers_503_and_leaves_nothing(client, alice, token, disk_full, settings):
    disk_full["fail_from"] = 1
    r = client.post(
        "/api/v1/generations",
        {"prompt": "combine them", "model": "sandbox", "reference_images": [b64(RED), b64(BLUE)]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
    nothing_left(alice, settings)


def test_gemini_answers_503_unavailable_and_leaves_nothing(
    client, alice, token, disk_full, settings
):
    parts = [{"text": "combine them"}] + [
        {"inlineData": {"mimeType": "image/png", "data": b64(img)}} for img in (RED, BLUE)
    ]
    r = client.post(
        "/v1beta/models/sandbox:generateContent",
        {"contents": [{"role": "user", "parts": parts}]},
        content_type="application/json",
        HTTP_X_GOOG_API_KEY=token,
    )
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["status"] == "UNAVAILABLE" and "could not be stored" in error["message"]
    assert error["details"][0]["@type"].endswith("RetryInfo")
    nothing_left(alice, settings)


def test_the_studio_says_so_and_keeps_the_form(client, alice, sandbox_model, no_broker, disk_full):
    client.force_login(alice)
    r = client.post(
        "/generate",
        {
            "prompt": "use my reference",
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
            "references": [SimpleUploadedFile("red.png", RED, content_type="image/png")],
        },
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 422
    page = r.content.decode()
    assert "could not be saved" in page and "Nothing was charged" in page
    assert "use my reference" in page  # the prompt is kept for another try
    assert not Upload.objects.exists() and not Generation.objects.exists()
    assert not LedgerEntry.objects.exists()


def test_a_request_sent_again_once_there_is_room_goes_through(
    client, alice, token, disk_full, settings
):
    body = {"prompt": "a fox", "model": "sandbox", "reference_images": [b64(RED)]}

    def send():
        return client.post(
            "/api/v1/generations",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            HTTP_IDEMPOTENCY_KEY="again",
        )

    assert send().status_code == 503
    disk_full["fail_from"] = 10**6  # room again
    r = send()
    assert r.status_code == 202 and Upload.objects.count() == 1
    assert Path(Upload.objects.get().file.path).read_bytes()
