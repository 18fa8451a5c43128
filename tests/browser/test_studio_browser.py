"""A person in Debian's Chromium: sign in, generate from the sandbox, watch the image arrive.

Everything is real: Django's live server, a Celery worker process, the sandbox upstream
over HTTP. Screenshots of the studio before, during and after land in var/test/screenshots/.
"""

import re

import pytest
from playwright.sync_api import expect

from generations.models import Generation
from tests.factories import make_route, make_user, shot, wait_in_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_sign_in_generate_and_see_the_image(page, live_server, slow_sandbox, celery_worker):
    make_user("dana@example.com", name="Dana", password="a long enough passphrase")

    errors = []  # htmx reports a bad selector or a missing swap target on the console
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(live_server.url + "/")
    assert "/accounts/login/" in page.url  # the studio asks who you are first
    shot(page, "0-sign-in")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password").fill("a long enough passphrase")
    page.get_by_role("button", name="Sign in").click()

    page.get_by_label("Prompt").wait_for()
    assert page.get_by_text("Your images will appear here").is_visible()
    pill = page.locator("#quota-pill")
    assert re.search(r"50 of 50 images left today", pill.inner_text())
    page.get_by_label("Prompt").fill("a lighthouse on a cliff at dusk, oil painting")
    page.get_by_text("16:9", exact=True).click()
    page.locator("#estimate .estimate-cost").wait_for()
    assert page.locator("#estimate").inner_text().startswith("up to $")
    shot(page, "1-before")

    page.get_by_role("button", name="Generate").click()
    card = page.locator("article.card").first
    card.locator(".placeholder").wait_for()
    assert re.search(r"49 of 50 images left today", pill.inner_text())
    assert card.locator(".frame").evaluate("el => getComputedStyle(el).aspectRatio") == "16 / 9"
    shot(page, "2-during")

    image = card.locator("img")
    image.wait_for(timeout=45_000)
    wait_in_page(page, "img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert "Sandbox" in card.inner_text() and "1376×768" in card.inner_text()
    assert page.locator("#estimate").inner_text().startswith("up to $")  # kept after submit
    shot(page, "3-after")

    job = Generation.objects.get()
    assert job.status == "succeeded" and job.user.email == "dana@example.com"

    assert not page.get_by_text("Your images will appear here").is_visible()

    # The same request again (Ctrl+Enter from the prompt, the form taller than the window):
    # the earlier image is offered for free, in view, and nothing is charged.
    page.set_viewport_size({"width": 1280, "height": 640})
    page.evaluate("window.scrollTo(0, 0)")
    page.get_by_label("Prompt").press("Control+Enter")
    notice = page.locator("#duplicate-notice .notice")
    notice.wait_for()
    expect(notice).to_be_in_viewport(ratio=1)
    page.evaluate("() => new Promise((ok) => requestAnimationFrame(() => ok(true)))")
    assert "You made this exact image" in notice.inner_text()
    shot(page, "4-duplicate-offer")
    assert Generation.objects.count() == 1
    page.get_by_role("button", name="Generate again").click()
    page.locator("article.card").nth(1).wait_for()
    assert Generation.objects.count() == 2
    # The picture opens the image's page; Download serves the stored file to its owner.
    opens = card.locator("a").first.get_attribute("href")
    assert opens.startswith("/images/") and Generation.objects.filter(pk=opens[8:]).exists()
    response = page.request.get(live_server.url + card.locator("a.download").get_attribute("href"))
    assert response.status == 200
    assert response.headers["content-type"] == "image/jpeg"  # as Gemini 3 answers
    assert errors == []


def test_the_very_tall_ratios_are_offered_only_by_models_that_take_them(
    page, live_server, sandbox_url, celery_worker
):
    make_route("nano-banana-pro", base_url=sandbox_url)
    make_route("nano-banana-2-1", base_url=sandbox_url)
    make_user("eli@example.com", password="a long enough passphrase")
    page.goto(live_server.url + "/")
    page.get_by_label("Email").fill("eli@example.com")
    page.get_by_label("Password").fill("a long enough passphrase")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Prompt").wait_for()

    ratios = page.locator("#model-options .ratios")
    page.get_by_label("Model").select_option("nano-banana-pro")
    expect(ratios.get_by_text("1:8", exact=True)).to_have_count(0)
    expect(page.locator("#model-options").get_by_text("Thinking")).to_have_count(0)
    page.get_by_label("Model").select_option("nano-banana-2-1")
    expect(ratios.get_by_text("1:8", exact=True)).to_be_visible()
    expect(page.locator("#model-options").get_by_text("Ground in Google Search")).to_be_visible()
    ratios.get_by_text("1:8", exact=True).click()
    page.locator("#model-options").get_by_text("High", exact=True).click()
    page.get_by_label("Prompt").fill("a lighthouse, very tall")
    shot(page, "tall-ratio-before")
    page.get_by_role("button", name="Generate").click()
    card = page.locator(".card.is-succeeded").first
    card.wait_for(timeout=60_000)
    assert "1:8" in card.inner_text() and "352×2928" in card.inner_text()
    job = Generation.objects.get()
    assert (job.aspect_ratio, job.params) == ("1:8", {"thinking_level": "high"})
    shot(page, "tall-ratio-after")
