"""The studio form in Debian's Chromium: references flagged and removable before Generate,
kept through a refusal, and errors that go away once their field is fixed (issue 20,
defect 5)."""

import io
import re

import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from generations.models import Generation
from tests.browser.test_gallery_browser import PASSWORD, sign_in
from tests.factories import make_user, shot, wait_in_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def _png(colour: str) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (32, 32), colour).save(out, "PNG")
    return out.getvalue()


def _files(*colours):
    return [{"name": f"{c}.png", "mimeType": "image/png", "buffer": _png(c)} for c in colours]


def test_references_over_the_limit_are_flagged_removable_and_kept(page, live_server, sandbox_model):
    sandbox_model.max_reference_images = 2
    sandbox_model.save()
    make_user("fay@example.com", name="Fay", password=PASSWORD)
    sign_in(page, live_server, "fay@example.com")
    page.goto(live_server.url + "/")

    page.locator("#id_references").set_input_files(_files("red", "green", "blue"))
    over = page.locator("#refs-over")
    expect(over).to_be_visible()
    expect(over).to_contain_text("3 references; this model takes up to 2")
    assert page.locator("#ref-previews .thumb.is-over").count() == 1
    over.scroll_into_view_if_needed()
    shot(page, "studio-refs-over")

    page.get_by_role("button", name="Remove green.png").click()
    expect(over).to_be_hidden()
    names = "Array.from(document.querySelector('#id_references').files).map(f => f.name)"
    assert page.evaluate(names) == ["red.png", "blue.png"]

    # Generate with no prompt: refused, the references still picked, the estimate asked again.
    with page.expect_request(lambda r: "/studio/estimate" in r.url and "ref_count=2" in r.url):
        page.get_by_role("button", name="Generate").click()
    error = page.locator("#studio-form .field-error", has_text="Write a prompt")
    expect(error).to_be_visible()
    assert page.evaluate(names) == ["red.png", "blue.png"]
    assert page.locator("#ref-previews img").count() == 2
    page.locator("#ref-previews").scroll_into_view_if_needed()
    shot(page, "studio-refused-keeps-refs")

    # Writing the prompt clears its error; changing the model does not bring it back.
    page.get_by_label("Prompt").fill("two kites over a beach")
    expect(error).to_have_count(0)
    page.get_by_label("Model").select_option(index=0)
    wait_in_page(page, "!document.querySelector('.htmx-request')")
    expect(page.locator("#studio-form .field-error", has_text="Write a prompt")).to_have_count(0)
    assert Generation.objects.count() == 0


def test_on_a_phone_the_new_card_the_quota_and_the_whole_navigation_are_in_reach(
    chromium, live_server, sandbox_model, no_broker
):
    """Issue 20, defect 3: at 390 px the new cards landed 1,156 px below the fold, the
    quota pill was hidden and the navigation was cut at "Adm" with no sign it scrolls."""
    make_user("gus@example.com", name="Gus", password=PASSWORD, is_staff=True)
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, live_server, "gus@example.com")
        page.goto(live_server.url + "/")
        pill = page.locator("#quota-pill")
        expect(pill).to_be_visible()
        assert pill.inner_text().strip().endswith("50/50 · $20.00")
        box = pill.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390

        nav = page.locator(".topbar .nav")
        scrolls = nav.evaluate("n => n.scrollWidth > n.clientWidth")
        admin = nav.get_by_role("link", name="Admin")
        if scrolls:  # what does not fit is marked as more to scroll to, not just cut
            expect(nav).to_have_class(re.compile(r"\bcan-scroll-right\b"))
            nav.evaluate("n => n.scrollTo({left: n.scrollWidth})")
            expect(nav).not_to_have_class(re.compile(r"\bcan-scroll-right\b"))
        admin_box = admin.bounding_box()
        assert admin_box["x"] + admin_box["width"] <= 391
        shot(page, "studio-390-top")

        page.get_by_label("Prompt").fill("a paper boat on a puddle")
        page.get_by_role("button", name="Generate").click()
        card = page.locator("#results article.card").first
        card.wait_for()
        in_view = (
            "(() => { const r = document.querySelector('#results article.card')"
            ".getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight - 80; })()"
        )
        wait_in_page(page, in_view)  # scrolled to the new card (smoothly: give it a moment)
        page.wait_for_timeout(1000)  # and it stays there: nothing takes the page back up
        assert page.evaluate(in_view)
        shot(page, "studio-390-after-generate")
    finally:
        context.close()
