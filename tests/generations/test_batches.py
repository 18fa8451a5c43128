"""Batch pages: create from lines or CSV, estimate and confirm, progress, cancel, retry."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import quotas
from generations import batches, engine
from generations.models import Batch, Generation
from tests.factories import REPO, page_text

pytestmark = pytest.mark.django_db

SETTINGS = {"model": "sandbox", "aspect_ratio": "1:1", "image_size": "1K", "count": 1}


def _check(client, **data):
    return client.post("/batches/check", {**SETTINGS, **data}, HTTP_HX_REQUEST="true")


def _start(client, **data):
    return client.post("/batches/start", {**SETTINGS, **data}, HTTP_HX_REQUEST="true")


def _csv(text: str):
    return SimpleUploadedFile("batch.csv", text.encode(), content_type="text/csv")


def test_it_shows_the_batches_page(client, alice, sandbox_model):
    client.force_login(alice)
    r = client.get("/batches")
    assert r.status_code == 200
    page = r.content.decode()
    assert "Prompts, one per line" in page and "No batches yet" in page
    assert "refused as a whole" in page


def test_it_estimates_before_starting_anything(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    r = _check(client, prompts="a fox\n\na heron\na kite", count=2)
    page = r.content.decode()
    assert r.status_code == 200
    assert "Start 6 images" in page and "from 3 prompts" in page and "$0." in page
    assert not Generation.objects.exists() and not Batch.objects.exists()


def test_it_starts_a_batch_after_confirming(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    r = _start(client, name="Birds", prompts="a fox\na heron")
    batch = Batch.objects.get()
    assert r.status_code == 200 and r["HX-Redirect"] == f"/batches/{batch.pk}"
    assert batch.name == "Birds" and batch.user == alice
    assert sorted(batch.generations.values_list("prompt", flat=True)) == ["a fox", "a heron"]
    assert quotas.summary(alice).images_today == 2
    page = client.get(f"/batches/{batch.pk}").content.decode()
    assert "Birds" in page and page.count('class="card is-queued"') == 2
    assert "2 queued" in page_text(page)


def test_it_reads_a_csv_with_per_row_settings(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    r = _start(
        client,
        csv_file=_csv(
            "prompt,model,aspect_ratio,size,count\n"
            'a fox,sandbox,16:9,2K,2\n"a heron, standing",,,,\n'
        ),
    )
    assert r.status_code == 200
    rows = list(
        Generation.objects.order_by("created").values_list("prompt", "aspect_ratio", "image_size")
    )
    assert rows == [
        ("a fox", "16:9", "2K"),
        ("a fox", "16:9", "2K"),
        ("a heron, standing", "1:1", "1K"),
    ]


def test_it_names_each_bad_csv_row_and_field(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    r = _check(
        client,
        csv_file=_csv(
            "prompt,model,aspect_ratio,count\n"
            "fine,sandbox,1:1,1\n"
            "bad model,dall-e,1:1,1\n"
            "bad ratio,sandbox,7:5,1\n"
            "bad count,sandbox,1:1,lots\n"
            ",sandbox,1:1,1\n"
        ),
    )
    page = r.content.decode()
    assert r.status_code == 422
    assert "Nothing was started." in page
    assert "Row 3, model: “dall-e” is not a model" in page
    assert "Row 4, aspect_ratio:" in page and "7:5" in page
    assert "Row 5, count: “lots” is not a whole number." in page
    assert "Row 6, prompt: The prompt is empty." in page
    assert "Row 2" not in page
    assert not Generation.objects.exists()


def test_a_csv_row_with_several_problems_names_each_of_them(client, alice, sandbox_model):
    client.force_login(alice)
    page = _check(
        client,
        csv_file=_csv("prompt,aspect_ratio,size,count\n,7:5,9K,lots\na kite,7:5,9K,1\n"),
    ).content.decode()
    assert "Row 2, prompt: The prompt is empty." in page
    assert "Row 2, count: “lots” is not a whole number." in page
    assert "Row 2, aspect_ratio:" in page and "Row 2, size:" in page
    assert "Row 3, aspect_ratio:" in page and "Row 3, size:" in page
    assert "Row 3, prompt" not in page and not Generation.objects.exists()


def test_prompts_and_a_csv_file_together_are_refused_not_half_ignored(client, alice, sandbox_model):
    client.force_login(alice)
    r = _check(client, prompts="a typed prompt", csv_file=_csv("prompt\na csv prompt\n"))
    assert r.status_code == 422
    assert "a batch takes one or the other" in r.content.decode()
    assert not Batch.objects.exists() and not Generation.objects.exists()


def test_the_readme_csv_example_is_accepted_on_a_fresh_install(client, alice, sandbox_model):
    readme = (REPO / "README.md").read_text()
    example = re.search(r"```csv\n(.*?)```", readme, re.S).group(1)
    example = "\n".join(line.strip() for line in example.splitlines()) + "\n"
    client.force_login(alice)
    r = _check(client, csv_file=_csv(example))
    assert r.status_code == 200, page_text(r.content)
    assert "Start 3 images" in r.content.decode()


def test_it_refuses_unknown_csv_columns(client, alice, sandbox_model):
    client.force_login(alice)
    r = _check(client, csv_file=_csv("text,colour\na fox,red\n"))
    page = r.content.decode()
    assert r.status_code == 422
    assert "Unknown columns &#x27;text&#x27;, &#x27;colour&#x27;" in page
    assert "prompt, model, aspect_ratio, size, count" in page


def test_it_refuses_a_csv_that_is_not_utf8(client, alice, sandbox_model):
    client.force_login(alice)
    r = _check(client, csv_file=SimpleUploadedFile("b.csv", "prompt\ncafé\n".encode("utf-16")))
    assert r.status_code == 422 and "not UTF-8" in r.content.decode()


def test_it_refuses_too_many_rows(client, alice, sandbox_model, monkeypatch):
    monkeypatch.setattr(batches, "MAX_ROWS", 3)
    client.force_login(alice)
    r = _check(client, prompts="a\nb\nc\nd")
    assert r.status_code == 422 and "The batch has 4 prompts; the limit is 3." in r.content.decode()


def test_it_refuses_an_empty_batch(client, alice, sandbox_model):
    client.force_login(alice)
    r = _check(client, prompts="  \n ")
    assert r.status_code == 422 and "Write at least one prompt" in r.content.decode()


def test_it_names_bad_lines(client, alice, sandbox_model):
    client.force_login(alice)
    r = _check(client, prompts="fine\n" + "x" * 9000)
    assert r.status_code == 422 and "Line 2, prompt: The prompt is 9,000 characters" in (
        r.content.decode()
    )


def test_it_refuses_a_whole_batch_over_the_daily_limit(client, alice, sandbox_model, no_broker):
    alice.daily_image_limit = 3
    alice.save()
    client.force_login(alice)
    r = _check(client, prompts="a\nb\nc\nd")
    page = r.content.decode()
    assert "your daily limit of 3 images leaves 3 today. Nothing was started." in page
    assert "disabled" in page.split("Start 4 images")[0].rsplit("<button", 1)[1]
    r = _start(client, prompts="a\nb\nc\nd")
    assert r.status_code == 422 and "daily limit of 3 images" in r.content.decode()
    assert not Generation.objects.exists() and not Batch.objects.exists()
    assert quotas.summary(alice).images_today == 0


def test_it_refuses_a_whole_batch_over_the_budget(client, alice, sandbox_model, no_broker):
    alice.monthly_budget_micros = 1
    alice.save()
    client.force_login(alice)
    r = _start(client, prompts="a\nb")
    assert r.status_code == 422 and "monthly budget" in r.content.decode()
    assert not Generation.objects.exists()
    confirm = _check(client, prompts="a\nb").content.decode()
    assert 'class="primary is-refused" disabled' in confirm  # says Start, not "Starting…"


def test_it_cancels_what_has_not_started_and_refunds(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    _start(client, prompts="a\nb\nc")
    batch = Batch.objects.get()
    running = batch.generations.order_by("created").first()
    engine.claim(running.pk)
    r = client.post(f"/batches/{batch.pk}/cancel", follow=True)
    page = r.content.decode()
    assert "Cancelled 2 images that had not started" in page
    assert set(batch.generations.values_list("status", flat=True)) == {"running", "cancelled"}
    assert quotas.summary(alice).images_today == 1


def test_it_retries_failed_items_as_new_jobs(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    _start(client, prompts="a\nb")
    batch = Batch.objects.get()
    failed = batch.generations.get(prompt="b")
    engine.fail(failed, "transient", "Down.")
    assert batches.progress(batch).failed == 1
    r = client.post(f"/batches/{batch.pk}/retry", follow=True)
    assert "Started 1 new image" in r.content.decode()
    assert batches.progress(batch).failed == 0 and batches.progress(batch).queued == 2
    assert Generation.objects.get(pk=failed.pk).status == "failed"  # kept in history


def test_the_list_shows_each_batch_with_its_counts(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    _start(client, name="Foxes", prompts="a\nb")
    page = client.get("/batches").content.decode()
    assert "Foxes" in page and "0 of 2 finished" in page


def test_the_list_query_count_does_not_grow(client, alice, sandbox_model, no_broker):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(alice)
    _start(client, prompts="a")
    client.get("/batches")
    with CaptureQueriesContext(connection) as one:
        client.get("/batches")
    for i in range(4):
        _start(client, prompts=f"x{i}\ny{i}")
    with CaptureQueriesContext(connection) as five:
        client.get("/batches")
    assert len(five) == len(one)


def test_the_poller_sends_batch_progress(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    _start(client, prompts="a\nb")
    batch = Batch.objects.get()
    engine.fail(batch.generations.first(), "blocked", "Blocked.")
    r = client.get("/live", {"batch": str(batch.pk)})
    page = r.content.decode()
    assert 'id="batch-progress"' in page and "1 failed" in page_text(page)


def test_other_people_cannot_see_or_touch_a_batch(
    client, alice, bob, charlie, sandbox_model, no_broker
):
    client.force_login(alice)
    _start(client, prompts="secret")
    batch = Batch.objects.get()
    for other in (bob, charlie):
        client.force_login(other)
        assert client.get(f"/batches/{batch.pk}").status_code == 404
        assert client.get(f"/batches/{batch.pk}/zip").status_code == 404
        assert client.post(f"/batches/{batch.pk}/cancel").status_code == 404
        assert client.post(f"/batches/{batch.pk}/retry").status_code == 404
        assert "secret" not in client.get("/batches").content.decode()
        polled = client.get("/live", {"batch": str(batch.pk)}).content.decode()
        assert "batch-progress" not in polled
    assert batch.generations.get().status == "queued"


def test_batch_pages_need_sign_in(client):
    assert client.get("/batches").status_code == 302


def test_change_on_the_confirm_step_brings_back_the_filled_form(client, alice, sandbox_model):
    client.force_login(alice)
    r = _check(client, edit="1", name="Foxes", prompts="a fox\na heron")
    page = r.content.decode()
    assert r.status_code == 200 and 'id="batch-form"' in page
    assert "a fox\na heron</textarea>" in page and 'value="Foxes"' in page
    assert "Nothing was started" not in page


def test_the_batch_page_query_count_does_not_grow(client, alice, sandbox_model, no_broker):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(alice)
    _start(client, prompts="a")
    _start(client, prompts="\n".join(f"p{i}" for i in range(12)))
    small, large = Batch.objects.order_by("created")
    client.get(f"/batches/{small.pk}")
    with CaptureQueriesContext(connection) as one:
        client.get(f"/batches/{small.pk}")
    with CaptureQueriesContext(connection) as twelve:
        page = client.get(f"/batches/{large.pk}").content.decode()
    assert page.count('class="card is-queued"') == 12
    assert len(twelve) == len(one)


def _limit_jobs_in_progress(user, n):
    user.max_concurrent_jobs = n
    user.save()


def test_a_batch_over_the_jobs_in_progress_limit_starts_what_fits_and_the_rest_waits(
    client, alice, sandbox_model, no_broker
):
    _limit_jobs_in_progress(alice, 2)
    client.force_login(alice)
    note = _check(client, prompts="a\nb\nc\nd\ne").content.decode()
    assert "Up to 2 images are made at once" in note and "Start 5 images" in note

    _start(client, prompts="a\nb\nc\nd\ne")
    batch = Batch.objects.get()
    assert sorted(batch.generations.values_list("prompt", flat=True)) == ["a", "b"]
    assert [row["prompt"] for row in batch.waiting] == ["c", "d", "e"]
    assert quotas.summary(alice).images_today == 2  # nothing reserved for waiting rows
    assert batches.progress(batch).queued == 5
    page = client.get(f"/batches/{batch.pk}").content.decode()
    assert "Waiting for a free slot: 3 images" in page

    first = batch.generations.get(prompt="a")
    engine.fail(first, "transient", "Down.")  # a job ends: its slot frees up
    batches.feed_after(first.pk)
    batch.refresh_from_db()
    assert sorted(batch.generations.values_list("prompt", flat=True)) == ["a", "b", "c"]
    assert [row["prompt"] for row in batch.waiting] == ["d", "e"]
    assert quotas.ledger_problems() == []


def test_the_poller_appends_waiting_rows_once_they_start(
    client, alice, bob, sandbox_model, no_broker
):
    _limit_jobs_in_progress(alice, 2)
    client.force_login(alice)
    _start(client, prompts="a\nb\nc\nd")
    batch = Batch.objects.get()
    a, b = batch.generations.order_by("created")
    query = {"batch": str(batch.pk), "after": str(b.pk)}
    assert 'id="job-' not in client.get("/live", query).content.decode()  # nothing new yet

    engine.fail(a, "transient", "Down.")
    batches.feed_after(a.pk)
    c = batch.generations.get(prompt="c")
    page = client.get("/live", query).content.decode()
    assert 'hx-swap-oob="beforeend:#results"' in page
    assert page.count('<article class="card') == 1 and f'id="job-{c.pk}"' in page
    # after the newest card: nothing again, and an id from elsewhere appends nothing
    assert 'id="job-' not in client.get("/live", {**query, "after": str(c.pk)}).content.decode()
    client.force_login(bob)
    _start(client, prompts="bob's")
    elsewhere = Generation.objects.get(user=bob)
    client.force_login(alice)
    foreign = client.get("/live", {**query, "after": str(elsewhere.pk)}).content.decode()
    assert 'id="job-' not in foreign
    # a page that shows no card yet gets every job of the batch
    everything = client.get("/live", {**query, "after": ""}).content.decode()
    assert everything.count('<article class="card') == 3


def test_a_retried_card_is_not_appended_again_and_does_not_hide_started_rows(
    client, alice, sandbox_model, no_broker
):
    _limit_jobs_in_progress(alice, 2)
    client.force_login(alice)
    _start(client, prompts="a\nb\nc\nd")
    batch = Batch.objects.get()
    a, b = batch.generations.order_by("created")
    engine.fail(a, "transient", "Down.")
    batches.feed_after(a.pk)  # row c starts while the page still shows a and b
    c = batch.generations.get(prompt="c")
    engine.fail(b, "transient", "Down.")
    retried = client.post(f"/jobs/{b.pk}/retry", HTTP_HX_REQUEST="true").content.decode()
    y = batch.generations.get(prompt="b")
    assert f'id="job-{y.pk}"' in retried and "data-retry" in retried

    # the page shows a and the retried card; its cursor skips the retried card (newer
    # than c) and names it as shown: c is appended, the retried card is not
    page = client.get(
        "/live", {"batch": str(batch.pk), "after": str(a.pk), "shown": f"{y.pk},not-an-id"}
    ).content.decode()
    assert f'id="job-{c.pk}"' in page and f'id="job-{y.pk}"' not in page
    # without naming it, the retried job would come back appended as well
    unnamed = client.get("/live", {"batch": str(batch.pk), "after": str(a.pk)}).content.decode()
    assert f'id="job-{y.pk}"' in unnamed
    # b left the batch when retried (in another tab, say): it still serves as a cursor
    moved = client.get(
        "/live", {"batch": str(batch.pk), "after": str(b.pk), "shown": str(y.pk)}
    ).content.decode()
    assert f'id="job-{c.pk}"' in moved


def test_a_batch_whose_rows_all_wait_says_where_they_will_appear(
    client, alice, sandbox_model, no_broker
):
    client.force_login(alice)
    _start(client, prompts="first")
    _limit_jobs_in_progress(alice, 1)
    _start(client, prompts="x\ny")
    batch = Batch.objects.order_by("created").last()
    assert batch.generations.count() == 0 and len(batch.waiting) == 2
    page = client.get(f"/batches/{batch.pk}").content.decode()
    assert "The first images appear here as they start." in page


def test_the_beat_task_starts_waiting_rows_once_there_is_room(
    client, alice, sandbox_model, no_broker
):
    from generations import tasks

    _limit_jobs_in_progress(alice, 1)
    client.force_login(alice)
    _start(client, prompts="a\nb")
    batch = Batch.objects.get()
    assert tasks.feed_batches() == 0  # still full
    engine.fail(batch.generations.get(), "blocked", "Blocked.")
    assert tasks.feed_batches() == 1
    batch.refresh_from_db()
    assert batch.waiting == [] and batch.generations.count() == 2


def test_a_waiting_row_refused_by_another_limit_stalls_and_says_why(
    client, alice, sandbox_model, no_broker
):
    _limit_jobs_in_progress(alice, 1)
    client.force_login(alice)
    _start(client, prompts="a\nb\nc")
    batch = Batch.objects.get()
    alice.daily_image_limit = 1  # the admin lowered it meanwhile
    alice.save()
    engine.fail(batch.generations.get(), "transient", "Down.")  # refunded: 0 used today
    batches.feed_after(batch.generations.get().pk)
    batch.refresh_from_db()
    assert batch.generations.count() == 2 and len(batch.waiting) == 1
    assert "daily" in batch.stalled.lower()
    page = client.get(f"/batches/{batch.pk}").content.decode()
    assert "1 image cannot start yet" in page


def test_cancel_also_drops_the_waiting_rows(client, alice, sandbox_model, no_broker):
    _limit_jobs_in_progress(alice, 2)
    client.force_login(alice)
    _start(client, prompts="a\nb\nc\nd")
    batch = Batch.objects.get()
    r = client.post(f"/batches/{batch.pk}/cancel", follow=True)
    assert "Cancelled 4 images that had not started" in r.content.decode()
    batch.refresh_from_db()
    assert batch.waiting == [] and batches.progress(batch).queued == 0
    assert quotas.summary(alice).images_today == 0 and quotas.ledger_problems() == []


def test_the_batch_page_counts_what_a_cancel_stopped(client, alice, sandbox_model, no_broker):
    """Done, failed and cancelled add up to the batch's images: a cancel that dropped
    waiting rows does not leave the page reading "1 done of 1" at 100 %."""
    _limit_jobs_in_progress(alice, 2)
    client.force_login(alice)
    _start(client, prompts="a\nb\nc\nd\ne")
    batch = Batch.objects.get()
    first = batch.generations.get(prompt="a")
    engine.fail(first, "transient", "Down.")  # one failed; b runs on; c, d, e wait
    batches.feed_after(first.pk)
    running = batch.generations.get(prompt="b")
    Generation.objects.filter(pk=running.pk).update(status=Generation.RUNNING)
    client.post(f"/batches/{batch.pk}/cancel")
    batch.refresh_from_db()
    p = batches.progress(batch)
    assert (p.failed, p.running, p.cancelled, p.total) == (1, 1, 3, 5)
    assert p.retryable == 2  # the failed one and the cancelled job that had been admitted
    page = page_text(client.get(f"/batches/{batch.pk}").content)
    assert "1 failed" in page and "3 cancelled" in page
    listing = page_text(client.get("/batches").content)
    assert "4 of 5 finished" in listing and "3 cancelled" in listing
