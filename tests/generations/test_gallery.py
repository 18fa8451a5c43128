"""The gallery page: what each person sees, pages, search, filters, star, delete and undo."""

import os
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generations import gallery
from generations.api import results
from generations.models import Image, ModelSpec
from tests.factories import make_image, make_images, page_text

pytestmark = pytest.mark.django_db


def tiles(response) -> list[str]:
    return re.findall(r'id="tile-([0-9a-f-]{36})"', response.content.decode())


def test_it_sends_anonymous_people_to_sign_in(client):
    r = client.get("/gallery")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]


def test_it_shows_my_images_newest_first_with_a_caption(client, alice):
    old = make_image(alice, "an old barn", created=timezone.now() - timedelta(days=2))
    new = make_image(alice, "a new bridge")
    client.force_login(alice)
    r = client.get("/gallery")
    assert r.status_code == 200
    assert tiles(r) == [str(new.generation_id), str(old.generation_id)]
    page = r.content.decode()
    assert "a new bridge" in page and "Sandbox (offline)" in page
    assert "64×64" in page and "$0.0388" in page  # size and cost (to 4 places)
    assert 'loading="lazy"' in page
    assert f"/images/{new.generation_id}/thumbnail" in page


def test_it_says_what_to_do_when_there_is_nothing_yet(client, alice):
    client.force_login(alice)
    r = client.get("/gallery")
    assert b"No images yet." in r.content and b"Make one in the studio" in r.content


def test_it_never_shows_other_peoples_images(client, alice, bob, charlie):
    make_image(alice, "alice's private cat")
    for person in (bob, charlie):
        client.force_login(person)
        r = client.get("/gallery")
        assert b"alice&#x27;s private cat" not in r.content and tiles(r) == []


def test_it_pages_with_a_cursor_and_loads_more_when_revealed(client, alice, settings):
    settings.NANOWEB_GALLERY_PAGE_SIZE = 3
    make_images(alice, 7)
    client.force_login(alice)
    first = client.get("/gallery")
    assert len(tiles(first)) == 3
    more = re.search(
        r'hx-get="(/gallery\?cursor=[^"]+)" hx-trigger="revealed"', first.content.decode()
    )
    assert more
    second = client.get(more.group(1).replace("&amp;", "&"), HTTP_HX_REQUEST="true")
    assert b"<html" not in second.content
    assert len(tiles(second)) == 3 and not set(tiles(first)) & set(tiles(second))
    cursor = re.search(r'cursor=([^"&]+)" hx-trigger', second.content.decode()).group(1)
    last = client.get(f"/gallery?cursor={cursor}", HTTP_HX_REQUEST="true")
    assert len(tiles(last)) == 1 and b'hx-trigger="revealed"' not in last.content
    everything = (first.content + second.content + last.content).decode()
    prompts = re.findall(r"image number (\d+)", everything)
    assert prompts[0] == "7" and "1" in prompts


def test_it_refuses_a_damaged_cursor_with_a_message(client, alice):
    client.force_login(alice)
    r = client.get("/gallery?cursor=not-a-cursor")
    assert r.status_code == 400
    assert b"This page link is damaged" in r.content


def test_it_searches_prompts_and_keeps_the_filters_in_the_next_page_link(client, alice, settings):
    settings.NANOWEB_GALLERY_PAGE_SIZE = 2
    for i in range(3):
        make_image(alice, f"a red fox {i}")
    make_image(alice, "a blue whale")
    client.force_login(alice)
    r = client.get("/gallery?q=FOX", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="gallery-results")
    assert b"<html" not in r.content  # only the results swap in
    assert len(tiles(r)) == 2 and b"a blue whale" not in r.content
    assert b"/gallery?q=FOX&amp;cursor=" in r.content


def test_it_finds_chinese_prompts_by_a_few_characters(client, alice):
    """Issue 20: search matches Chinese prompts (no word boundaries to rely on)."""
    make_image(alice, "一只在雨中读报的狐狸，水彩")
    make_image(alice, "春节海报，红色灯笼")
    client.force_login(alice)
    r = client.get(
        "/gallery", {"q": "读报"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="gallery-results"
    )
    body = r.content.decode()
    assert len(tiles(r)) == 1 and "一只在雨中读报的狐狸" in body and "春节海报" not in body


def test_it_filters_by_model_starred_and_dates(client, alice):
    now = timezone.now()
    pro = ModelSpec.objects.get(slug="nano-banana-pro")
    starred = make_image(alice, "starred one", starred=True)
    by_pro = make_image(alice, "made by pro", model=pro)
    old = make_image(alice, "from last month", created=now - timedelta(days=30))
    client.force_login(alice)
    assert tiles(client.get("/gallery?starred=1")) == [str(starred.generation_id)]
    assert tiles(client.get("/gallery?model=nano-banana-pro")) == [str(by_pro.generation_id)]
    day = (now - timedelta(days=30)).date().isoformat()
    assert tiles(client.get(f"/gallery?since={day}&until={day}")) == [str(old.generation_id)]
    assert str(old.generation_id) not in tiles(
        client.get(f"/gallery?since={(now - timedelta(days=1)).date().isoformat()}")
    )
    r = client.get("/gallery?starred=1&q=nothing-like-this")
    assert b"No images match these filters." in r.content


def test_the_model_filter_offers_models_in_use_or_usable_not_every_model(
    client, alice, sandbox_model
):
    pro = ModelSpec.objects.get(slug="nano-banana-pro")
    make_image(alice, "made by pro when it had a key", model=pro)
    client.force_login(alice)

    def offered(url="/gallery"):
        page = client.get(url).content.decode()
        return set(
            re.findall(
                r'<option value="([\w-]+)"',
                page.split('name="model"', 1)[1].split("</select>", 1)[0],
            )
        )

    assert offered() == {"sandbox", "nano-banana-pro"}  # usable, and made an image
    assert offered("/gallery?model=nano-banana-2") == {
        "sandbox",
        "nano-banana-pro",
        "nano-banana-2",
    }  # linked to


def test_it_refuses_bad_filters_with_a_message(client, alice):
    client.force_login(alice)
    r = client.get("/gallery?since=2026-13-45")
    assert r.status_code == 400 and b"Enter a valid date" in r.content
    r = client.get("/gallery?since=2026-05-02&until=2026-05-01")
    assert r.status_code == 400 and b"The end date is before the start date." in r.content
    r = client.get("/gallery?model=no-such-model")
    assert r.status_code == 400 and b"Select a valid choice" in r.content


def test_bad_filters_from_the_live_form_come_back_as_422_with_the_message(client, alice):
    """The filter form updates the results with htmx, which swaps a 422 (the app's "the
    form has errors") but not a 400: the message must come back as a 422."""
    client.force_login(alice)
    r = client.get(
        "/gallery?since=2026-05-02&until=2026-05-01",
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="gallery-results",
    )
    assert r.status_code == 422
    assert "To: The end date is before the start date." in page_text(r.content)


def test_it_stars_and_unstars_my_image(client, alice):
    image = make_image(alice)
    client.force_login(alice)
    r = client.post(f"/images/{image.generation_id}/star", HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and b'aria-pressed="true"' in r.content
    image.refresh_from_db()
    assert image.starred
    client.post(f"/images/{image.generation_id}/star", HTTP_HX_REQUEST="true")
    image.refresh_from_db()
    assert not image.starred


def test_it_does_not_let_others_star_share_or_delete_my_image(client, alice, bob, charlie):
    image = make_image(alice, shared=True)
    for person in (bob, charlie):
        client.force_login(person)
        for action in ("star", "share", "delete"):
            assert client.post(f"/images/{image.generation_id}/{action}").status_code == 404
    image.refresh_from_db()
    assert not image.starred and image.shared_with_team and image.deleted_at is None


def test_it_deletes_with_undo_and_purges_only_after_the_window(client, alice, settings):
    image = make_image(alice, "to be deleted")
    client.force_login(alice)
    r = client.post(f"/images/{image.generation_id}/delete", HTTP_HX_REQUEST="true")
    assert b"Image deleted." in r.content and b"Undo" in r.content
    assert tiles(client.get("/gallery")) == []
    assert client.get(f"/images/{image.generation_id}/file").status_code == 404
    assert gallery.purge_deleted() == 0  # still inside the undo window
    r = client.post(f"/images/{image.generation_id}/restore", HTTP_HX_REQUEST="true")
    assert b"to be deleted" in r.content
    assert tiles(client.get("/gallery")) == [str(image.generation_id)]

    client.post(f"/images/{image.generation_id}/delete", HTTP_HX_REQUEST="true")
    path = image.file.path
    later = timezone.now() + timedelta(seconds=settings.NANOWEB_UNDO_SECONDS + 1)
    assert gallery.purge_deleted(now=later) == 1
    assert not Image.objects.filter(pk=image.pk).exists()
    assert not os.path.exists(path)
    r = client.post(f"/images/{image.generation_id}/restore", HTTP_HX_REQUEST="true")
    assert r.status_code == 404


def test_it_cannot_restore_someone_elses_deleted_image(client, alice, bob):
    image = make_image(alice)
    gallery.soft_delete(alice, [image.generation_id])
    client.force_login(bob)
    assert client.post(f"/images/{image.generation_id}/restore").status_code == 404
    image.refresh_from_db()
    assert image.deleted_at is not None


def test_it_keeps_the_query_count_flat_as_the_gallery_grows(client, alice, settings):
    settings.NANOWEB_GALLERY_PAGE_SIZE = 10
    client.force_login(alice)

    def count(url):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx)

    make_images(alice, 1)
    one = count("/gallery"), count("/gallery?q=image"), count("/gallery?shared=team")
    make_images(alice, 200, start=timezone.now() - timedelta(days=30), shared=True)
    assert (count("/gallery"), count("/gallery?q=image"), count("/gallery?shared=team")) == one


def test_a_deleted_image_leaves_the_studios_recent_cards_too(client, alice, sandbox_model):
    kept = make_image(alice, "kept on the studio", model=sandbox_model)
    gone = make_image(alice, "deleted from the gallery", model=sandbox_model)
    gallery.soft_delete(alice, [gone.generation_id])
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "kept on the studio" in page and "deleted from the gallery" not in page
    assert str(kept.generation_id) in page


def test_it_filters_one_batch_from_the_batch_page_link(client, alice, bob):
    from generations.models import Batch

    batch = Batch.objects.create(user=alice, name="Coast")
    in_batch = make_image(alice, "a heron in reeds")
    in_batch.generation.batch = batch
    in_batch.generation.save()
    make_image(alice, "not in the batch")
    client.force_login(alice)

    r = client.get(f"/gallery?batch={batch.pk}")
    assert r.status_code == 200 and tiles(r) == [str(in_batch.generation_id)]
    assert "One batch" in r.content.decode()
    assert f"/gallery?batch={batch.pk}" in client.get(f"/batches/{batch.pk}").content.decode()
    assert client.get("/gallery?batch=not-a-uuid").status_code == 400

    client.force_login(bob)  # someone else's batch narrows bob's own images to nothing
    assert tiles(client.get(f"/gallery?batch={batch.pk}")) == []


def test_a_deleted_image_s_signed_api_link_stops_working_at_once(client, alice, rf):
    image = make_image(alice)
    url = results.signed_url(rf.get("/"), image.generation)
    path = url.removeprefix("http://testserver")
    assert client.get(path).status_code == 200
    gallery.soft_delete(alice, [image.generation_id])
    r = client.get(path)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
