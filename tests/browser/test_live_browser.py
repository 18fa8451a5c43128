"""Generate four images and watch them arrive: one poller, no reload, the counter to 0."""

import pytest

from generations.models import Generation
from tests.factories import make_user, shot, wait_in_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def _sign_in(page, url):
    make_user("erin@example.com", name="Erin", password="a long enough passphrase")
    page.goto(url + "/accounts/login/")
    page.get_by_label("Email").fill("erin@example.com")
    page.get_by_label("Password").fill("a long enough passphrase")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Prompt").wait_for()


def test_four_images_arrive_without_a_reload(page, live_server, slow_sandbox, celery_worker):
    _sign_in(page, live_server.url)
    polls = []
    page.on("request", lambda r: polls.append(r.url) if "/live?" in r.url else None)
    card_polls = []
    page.on("request", lambda r: card_polls.append(r.url) if r.url.endswith("/card") else None)
    page.evaluate("window.nwMarker = 'same page'")

    page.get_by_label("Prompt").fill("four paper boats on a pond")
    page.locator("label.chip", has_text="4").last.click()
    page.get_by_role("button", name="Generate").click()
    cards = page.locator("article.card")
    cards.nth(3).wait_for()
    counter = page.locator("#nav-generating")
    counter.wait_for()
    assert "Generating (4)" in counter.inner_text()
    page.locator(".placeholder .stage", has_text="Generating").first.wait_for()
    shot(page, "live-1-generating")

    page.locator("article.card img").nth(3).wait_for(timeout=60_000)
    wait_in_page(page, "document.querySelector('#nav-generating').dataset.count === '0'")
    assert counter.is_hidden()
    assert page.locator("[data-live]").count() == 0
    assert page.evaluate("window.nwMarker") == "same page"  # no reload happened
    shot(page, "live-2-done")
    assert Generation.objects.filter(status="succeeded").count() == 4
    assert polls and not card_polls  # one page-level poller, never one request per card
