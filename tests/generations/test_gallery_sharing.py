"""Sharing with the team, the team gallery, and bulk delete / download."""

import io
import re
import zipfile

import pytest

from generations.models import Image
from tests.factories import make_image

pytestmark = pytest.mark.django_db


def tiles(response) -> list[str]:
    return re.findall(r'id="tile-([0-9a-f-]{36})"', response.content.decode())


def test_it_shares_an_image_with_the_team_and_back(client, alice):
    image = make_image(alice)
    client.force_login(alice)
    r = client.post(f"/images/{image.generation_id}/share", HTTP_HX_REQUEST="true")
    assert b"Shared with team" in r.content
    image.refresh_from_db()
    assert image.shared_with_team
    client.post(f"/images/{image.generation_id}/share", HTTP_HX_REQUEST="true")
    image.refresh_from_db()
    assert not image.shared_with_team


def test_the_team_gallery_shows_what_members_shared_and_nothing_else(client, alice, bob, charlie):
    shared = make_image(alice, "shared sunset", shared=True)
    make_image(alice, "private sunrise")
    make_image(charlie, "charlie shared elsewhere", shared=True)
    client.force_login(bob)
    r = client.get("/gallery?shared=team")
    assert r.status_code == 200 and b"Team gallery" in r.content
    assert tiles(r) == [str(shared.generation_id)]
    assert b"by Alice" in r.content
    assert client.get(f"/images/{shared.generation_id}/thumbnail").status_code == 200
    assert client.get(f"/images/{shared.generation_id}").status_code == 200
    client.force_login(charlie)
    assert str(shared.generation_id) not in tiles(client.get("/gallery?shared=team"))
    assert client.get(f"/images/{shared.generation_id}").status_code == 404


def test_i_shared_lists_my_shared_images(client, alice):
    shared = make_image(alice, "mine, shared", shared=True)
    make_image(alice, "mine, private")
    client.force_login(alice)
    assert tiles(client.get("/gallery?shared=mine")) == [str(shared.generation_id)]


def test_bulk_delete_removes_only_my_images_and_offers_undo(client, alice, bob):
    mine = [make_image(alice, f"mine {i}") for i in range(3)]
    theirs = make_image(bob, "bob's", shared=True)
    client.force_login(alice)
    ids = [str(i.generation_id) for i in mine[:2]] + [str(theirs.generation_id)]
    r = client.post("/gallery/delete", {"ids": ids}, HTTP_HX_REQUEST="true")
    assert b"2 images deleted." in r.content and b"Undo" in r.content
    assert Image.objects.live().filter(user=alice).count() == 1
    assert Image.objects.live().filter(pk=theirs.pk).exists()
    client.post("/gallery/restore", {"ids": ids}, HTTP_HX_REQUEST="true")
    assert Image.objects.live().filter(user=alice).count() == 3


def test_bulk_actions_refuse_an_empty_or_malformed_selection(client, alice):
    client.force_login(alice)
    assert client.post("/gallery/delete", {}).status_code == 400
    r = client.post("/gallery/download", {"ids": "nope"})
    assert r.status_code == 400 and b"Select between 1 and" in r.content


def test_bulk_download_streams_a_zip_of_the_originals(client, alice, bob, charlie):
    mine = [make_image(alice, f"zip me {i}") for i in range(3)]
    teammate = make_image(bob, "bob shared", shared=True)
    stranger = make_image(charlie, "charlie's")
    client.force_login(alice)
    ids = [str(i.generation_id) for i in [*mine, teammate, stranger]]
    r = client.post("/gallery/download", {"ids": ids})
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    assert r.streaming
    archive = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    names = archive.namelist()
    assert len(names) == 4  # mine and the teammate's shared one; never charlie's
    assert all(n.startswith("nanoweb-") and n.endswith(".png") for n in names)
    with mine[0].file.open("rb") as f:
        original = f.read()
    assert original in [archive.read(n) for n in names]
    assert archive.testzip() is None


def test_bulk_download_of_nothing_visible_is_404(client, alice, charlie):
    stranger = make_image(charlie)
    client.force_login(alice)
    r = client.post("/gallery/download", {"ids": [str(stranger.generation_id)]})
    assert r.status_code == 404


def test_bulk_download_is_a_post_so_no_token_lands_in_a_url(client, alice):
    """A GET form put the CSRF token and every selected id in the address, and so in
    access logs and the browser's history."""
    mine = make_image(alice, "zip me")
    client.force_login(alice)
    assert client.get("/gallery/download", {"ids": [str(mine.generation_id)]}).status_code == 405
    page = client.get("/gallery").content.decode()
    button = re.search(r"<button[^>]*data-bulk-download[^>]*>", page).group(0)
    form = re.search(r'<form id="bulk-form"[^>]*>', page).group(0)
    assert 'formmethod="get"' not in button and 'method="post"' in form
