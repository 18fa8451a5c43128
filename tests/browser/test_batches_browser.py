"""Run a 10-prompt batch to completion in Chromium and download its zip.

Fay may have four images in progress, so six rows wait and start as slots free
up; their cards join the open page as they start.
"""

import csv
import io
import zipfile

import pytest

from generations.models import Batch
from tests.factories import make_user, shot, wait_in_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PROMPTS = [f"a paper boat number {n}" for n in range(1, 11)]


@pytest.mark.worker(concurrency=3)
def test_a_ten_prompt_batch_runs_and_downloads(
    page,
    live_server,
    sandbox_model,
    celery_worker,
):
    fay = make_user("fay@example.com", name="Fay", password="a long enough passphrase")
    fay.max_concurrent_jobs = 4  # six rows wait for a free slot and start on their own
    fay.save()
    page.goto(live_server.url + "/accounts/login/?next=/batches")
    page.get_by_label("Email").fill("fay@example.com")
    page.get_by_label("Password").fill("a long enough passphrase")
    page.get_by_role("button", name="Sign in").click()

    page.get_by_label("Name").fill("Boats")
    page.get_by_label("Prompts, one per line").fill("\n".join(PROMPTS))
    page.get_by_role("button", name="Check and estimate").click()
    start = page.get_by_role("button", name="Start 10 images")
    start.wait_for()
    assert "$0." in page.locator("#batch-confirm .batch-summary").inner_text()
    assert not Batch.objects.exists()  # nothing starts before the confirm
    shot(page, "batch-1-confirm")
    start.click()

    page.wait_for_url("**/batches/*")
    page.locator("#batch-progress").wait_for()
    page.evaluate("window.sameDocument = true")  # cards must arrive without a reload
    # A card that arrives twice (a poll racing a Retry) is shown once, in its first place.
    page.locator("article.card").first.wait_for()
    page.evaluate("""() => {
        const cards = document.querySelector('[data-batch-cards]');
        cards.append(cards.querySelector('article.card').cloneNode(true));
    }""")
    wait_in_page(
        page,
        "document.querySelector('#batch-progress').dataset.liveBatch === 'done'",
        timeout=90_000,
    )
    counts = page.locator(".batch-counts").inner_text()
    assert "10\ndone" in counts.replace(" ", "\n") and "0\nfailed" in counts.replace(" ", "\n")
    wait_in_page(page, "document.querySelectorAll('article.card img').length === 10")
    assert page.evaluate("window.sameDocument") is True
    shown = page.locator("article.card img").evaluate_all("els => els.map(e => e.alt)")
    assert shown == PROMPTS  # in the order of the rows, each once
    shot(page, "batch-2-done")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download zip").click()
    archive = zipfile.ZipFile(info.value.path())
    names = archive.namelist()
    assert names[0] == "manifest.csv" and len(names) == 11
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig"))))
    assert [m["prompt"] for m in manifest] == PROMPTS
    assert {m["status"] for m in manifest} == {"succeeded"}
    assert all(m["file"] in names for m in manifest)
