"""The sandbox speaks Gemini's Batch API and Files API: inline and file input, slow
completion and expiry on a marker, per-row errors, cancel; driven through nanoweb's
own Batch API client (so both sides are checked against the same wire shapes)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from generations.providers import gemini_batch
from generations.providers.base import ImageRequest, ImageResult, ProviderError
from generations.sandbox.server import running_sandbox

KEY = "sandbox-key-not-secret"
MODEL = "gemini-3.1-flash-image"


def rows(*prompts: str) -> list[gemini_batch.BatchRow]:
    return [
        gemini_batch.BatchRow(f"row-{i}", ImageRequest(MODEL, p, "1:1", image_size="1K"))
        for i, p in enumerate(prompts)
    ]


def wait_done(client, name: str, timeout: float = 10.0) -> gemini_batch.BatchStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(name)
        if status.finished:
            return status
        time.sleep(0.1)
    raise AssertionError("the batch never finished")


@pytest.fixture
def batch_sandbox():
    with running_sandbox() as url:
        yield url, gemini_batch.GeminiBatchClient(url, KEY)


def test_it_answers_an_inline_batch_by_key_with_per_row_errors(batch_sandbox):
    url, client = batch_sandbox
    sent = rows("a fox", "a lighthouse [sandbox:prompt_block]", "a kite [sandbox:503]")
    status, file_name = client.create(MODEL, "nanoweb-test-1", sent, inline_limit=10**8)

    assert file_name == ""
    assert status.name.startswith("batches/")
    assert status.state == gemini_batch.PENDING and not status.finished
    done = wait_done(client, status.name)
    assert done.state == gemini_batch.SUCCEEDED
    assert done.stats["requestCount"] == 3 and done.stats["failedRequestCount"] == 1
    found = gemini_batch.results_by_key(done, [r.key for r in sent])
    assert set(found) == {"row-0", "row-1", "row-2"}
    image = gemini_batch.row_outcome(found["row-0"])
    assert isinstance(image, ImageResult) and image.images[0].mime_type.startswith("image/")
    blocked = gemini_batch.row_outcome(found["row-1"])
    assert isinstance(blocked, ProviderError) and blocked.kind == "blocked"
    unavailable = gemini_batch.row_outcome(found["row-2"])
    assert isinstance(unavailable, ProviderError) and unavailable.kind == "transient"
    health = httpx.get(f"{url}/healthz").json()["batch"]
    assert health["created"] == 1 and health["inline"] == 1 and health["rows"] == 3


def test_it_takes_a_jsonl_file_through_the_resumable_upload_and_answers_with_a_file(
    batch_sandbox,
):
    url, client = batch_sandbox
    sent = rows("a red fox", "a blue fox")
    status, file_name = client.create(MODEL, "nanoweb-test-2", sent, inline_limit=100)

    assert file_name.startswith("files/")
    done = wait_done(client, status.name)
    assert done.inline is None and done.responses_file.startswith("files/")
    lines = client.download(done.responses_file)
    assert [json.loads(line)["key"] for line in lines.splitlines()] == ["row-0", "row-1"]
    found = gemini_batch.results_by_key(done, ["row-0", "row-1"], lines)
    assert all(isinstance(gemini_batch.row_outcome(e), ImageResult) for e in found.values())
    health = httpx.get(f"{url}/healthz").json()["batch"]
    assert health["uploads"] == 1 and health["from_file"] == 1


def test_a_chunk_post_needs_no_key_but_the_right_offset(batch_sandbox):
    url, _client = batch_sandbox
    start = httpx.post(
        f"{url}/upload/v1beta/files",
        headers={
            "x-goog-api-key": KEY,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "4",
        },
        json={"file": {"displayName": "x"}},
    )
    upload_url = start.headers["x-goog-upload-url"]
    wrong = httpx.post(
        upload_url,
        content=b"abcd",
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "2"},
    )
    assert wrong.status_code == 400
    right = httpx.post(
        upload_url,
        content=b"abcd",
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
    )
    assert right.headers["x-goog-upload-status"] == "final"
    assert right.json()["file"]["name"].startswith("files/")


def test_a_slow_batch_keeps_running_until_it_is_cancelled(batch_sandbox):
    _url, client = batch_sandbox
    status, _ = client.create(MODEL, "nanoweb-slow", rows("a fox [batch:slow]"), inline_limit=10**8)
    time.sleep(0.4)
    assert client.get(status.name).state == gemini_batch.RUNNING
    client.cancel(status.name)
    done = client.get(status.name)
    assert done.state == gemini_batch.CANCELLED and done.done and done.inline is None


def test_an_expiring_batch_ends_expired_with_no_results(batch_sandbox):
    _url, client = batch_sandbox
    sent = rows("a fox [batch:expire]", "a hare")
    status, _ = client.create(MODEL, "nanoweb-exp", sent, inline_limit=10**8)
    done = wait_done(client, status.name)
    assert done.state == gemini_batch.EXPIRED
    assert gemini_batch.results_by_key(done, ["row-0", "row-1"]) == {}


def test_it_finds_a_batch_by_display_name_across_pages(batch_sandbox):
    _url, client = batch_sandbox
    for i in range(12):
        client.create(MODEL, f"nanoweb-many-{i}", rows("a fox [batch:slow]"), inline_limit=10**8)
    found = client.find("nanoweb-many-11")
    assert found is not None and found.display_name == "nanoweb-many-11"
    assert client.find("nanoweb-never-sent") is None


def test_a_batch_of_another_key_is_not_found(batch_sandbox):
    url, client = batch_sandbox
    status, _ = client.create(MODEL, "nanoweb-mine", rows("a fox"), inline_limit=10**8)
    other = gemini_batch.GeminiBatchClient(url, "another-key")
    with pytest.raises(ProviderError) as caught:
        other.get(status.name)
    assert caught.value.http_status == 404


def test_position_is_used_only_for_inline_answers_without_keys():
    answers = [{"response": {"n": 1}}, {"response": {"n": 2}}]
    inline = gemini_batch.BatchStatus("batches/x", gemini_batch.SUCCEEDED, inline=answers)
    assert gemini_batch.results_by_key(inline, ["a", "b"]) == {"a": answers[0], "b": answers[1]}
    assert gemini_batch.results_by_key(inline, ["a", "b", "c"]) == {}  # counts disagree
    shuffled = [{"response": {"n": 2}, "metadata": {"key": "b"}}, {"metadata": {"key": "a"}}]
    keyed = gemini_batch.BatchStatus("batches/x", gemini_batch.SUCCEEDED, inline=shuffled)
    assert gemini_batch.results_by_key(keyed, ["a", "b"])["b"] == shuffled[0]
