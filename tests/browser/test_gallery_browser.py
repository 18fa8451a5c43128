"""The gallery in Debian's Chromium: edit a result with it as a reference, scroll through
300 images, search and star (with the mouse and with the keyboard)."""

import re
import zipfile

import pytest
from django.conf import settings
from playwright.sync_api import expect

from generations.models import Generation, Image
from tests.factories import make_image, make_images, make_user, shot, wait_in_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "a long enough passphrase"


def sign_in(page, live_server, email: str) -> None:
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Gallery").wait_for()


def test_edit_a_result_with_it_as_a_reference(
    page,
    live_server,
    sandbox_model,
    celery_worker,
):
    erin = make_user("erin@example.com", name="Erin", password=PASSWORD)
    original = make_image(erin, "a plain wooden chair", model=sandbox_model)
    sign_in(page, live_server, "erin@example.com")

    page.goto(live_server.url + "/gallery")
    page.locator(f"#tile-{original.generation_id} a.tile-frame").click()
    page.get_by_role("link", name="Open image page").click()
    page.wait_for_url(f"**/images/{original.generation_id}")
    page.get_by_role("link", name="Edit this image").click()

    reference = page.locator("#edit-parent")
    reference.wait_for()
    assert "Editing this image" in reference.inner_text()
    page.get_by_label("Prompt").fill("the same chair, painted red")
    page.get_by_role("button", name="Generate").click()
    wait_in_page(  # the original's card and the edit's, both finished
        page,
        "document.querySelectorAll('article.card.is-succeeded img').length === 2",
        timeout=45_000,
    )
    shot(page, "gallery-edit-1-studio")

    edit = Generation.objects.get(prompt="the same chair, painted red")
    assert edit.parent_image_id == original.pk and edit.references.count() == 1
    page.goto(live_server.url + f"/images/{edit.pk}")
    chain = page.locator(".edit-chain")
    assert "a plain wooden chair" in chain.inner_text()
    chain.get_by_role("link", name=re.compile("a plain wooden chair")).click()
    page.wait_for_url(f"**/images/{original.generation_id}")
    assert "the same chair, painted red" in page.locator(".edit-chain").inner_text()
    shot(page, "gallery-edit-2-chain")


def test_infinite_scroll_through_300_images(page, live_server):
    finn = make_user("finn@example.com", name="Finn", password=PASSWORD)
    make_images(finn, 300)
    sign_in(page, live_server, "finn@example.com")
    page.goto(live_server.url + "/gallery")
    tiles = page.locator("[data-tile]")
    assert tiles.count() == settings.NANOWEB_GALLERY_PAGE_SIZE
    for _ in range(30):
        before = tiles.count()  # counted before scrolling: the next page may land at once
        if before == 300:
            break
        page.locator("[data-tile]").last.scroll_into_view_if_needed()
        page.mouse.wheel(0, 20_000)
        wait_in_page(page, "n => document.querySelectorAll('[data-tile]').length > n", arg=before)
    assert tiles.count() == 300
    assert page.locator(".more").count() == 0  # the end: no more loader
    prompts = page.locator(".tile-caption .prompt").all_inner_texts()
    assert prompts[0] == "image number 300" and prompts[-1] == "image number 1"
    assert len(set(prompts)) == 300


def test_search_and_star(page, live_server):
    gina = make_user("gina@example.com", name="Gina", password=PASSWORD)
    fox = make_image(gina, "a red fox in the snow")
    owl = make_image(gina, "an owl at midnight")
    make_image(gina, "a harbour at noon")
    sign_in(page, live_server, "gina@example.com")
    page.goto(live_server.url + "/gallery")
    assert page.locator("[data-tile]").count() == 3

    page.get_by_label("Search prompts").fill("fox")
    page.wait_for_url("**/gallery?*q=fox*")  # the filter lives in the URL
    wait_in_page(page, "document.querySelectorAll('[data-tile]').length === 1")
    tile = page.locator(f"#tile-{fox.generation_id}")
    tile.get_by_role("button", name="Star").click()
    tile.get_by_role("button", name="Unstar").wait_for()
    shot(page, "gallery-search-star")

    # The keyboard: open the owl in the viewer, press s, close with Esc.
    page.goto(live_server.url + "/gallery")
    page.locator(f"#tile-{owl.generation_id} a.tile-frame").click()
    viewer = page.locator("#lightbox")
    viewer.wait_for()
    assert "an owl at midnight" in viewer.inner_text()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#lightbox-caption")).to_contain_text("a red fox in the snow")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("s")
    page.locator(f"#tile-{owl.generation_id}").get_by_role("button", name="Unstar").wait_for()
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    page.keyboard.press("Escape")

    page.get_by_text("★ Starred").click()
    page.wait_for_url("**starred=1*")
    wait_in_page(page, "document.querySelectorAll('[data-tile]').length === 2")
    assert set(Image.objects.filter(starred=True).values_list("pk", flat=True)) == {fox.pk, owl.pk}
    page.reload()  # a linked view shows the same thing
    assert page.locator("[data-tile]").count() == 2

    # A range that ends before it starts says so, and keeps the results it had.
    page.locator("input[name=since]").fill("2026-05-02")
    page.locator("input[name=until]").fill("2026-05-01")
    page.locator("input[name=until]").dispatch_event("change")
    expect(page.get_by_role("alert")).to_contain_text("The end date is before the start date.")
    page.goto(live_server.url + "/gallery?starred=1")

    # Select both and download them: a POST, so the address keeps no token or ids.
    for image in (fox, owl):
        page.locator(f"#tile-{image.generation_id}").get_by_label("Select this image").check()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download zip").click()
    assert len(zipfile.ZipFile(info.value.path()).namelist()) == 2
    assert "csrfmiddlewaretoken" not in page.url and "ids=" not in page.url


def test_drag_a_recent_image_onto_the_drop_zone_as_a_reference(page, live_server):
    fay = make_user("fay@example.com", name="Fay", password=PASSWORD)
    made = make_image(fay, "a blue bicycle")
    sign_in(page, live_server, "fay@example.com")

    page.goto(live_server.url + "/")
    page.locator(f"#job-{made.generation_id} .frame a").drag_to(page.locator(".dropzone"))
    wait_in_page(page, "document.querySelector('#id_references').files.length === 1")
    name = page.evaluate("document.querySelector('#id_references').files[0].name")
    assert name.startswith(f"gallery-{str(made.generation_id)[:8]}")
