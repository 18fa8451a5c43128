"""One image's page: its facts, its actions, its edit chain; editing and reusing from it."""

import re
from urllib.parse import parse_qs, urlparse

import pytest

from accounts.models import LedgerEntry
from generations.models import Generation
from tests.factories import make_image

pytestmark = pytest.mark.django_db


def test_it_shows_the_image_with_its_prompt_settings_and_actions(client, alice):
    image = make_image(alice, "a paper boat on a puddle")
    client.force_login(alice)
    r = client.get(f"/images/{image.generation_id}")
    assert r.status_code == 200
    page = r.content.decode()
    assert "a paper boat on a puddle" in page and "Sandbox (offline)" in page
    assert "64×64" in page and "$0.0388" in page
    assert "Edit this image" in page and "Reuse settings" in page and "Download original" in page
    assert f"/images/{image.generation_id}/file?download=1" in page


def test_it_hides_an_image_from_everyone_else(client, alice, bob, charlie):
    image = make_image(alice)
    for person in (bob, charlie):
        client.force_login(person)
        for suffix in ("", "/file", "/thumbnail"):
            assert client.get(f"/images/{image.generation_id}{suffix}").status_code == 404


def test_it_shows_the_edit_chain_both_ways(client, alice):
    root = make_image(alice, "first draft of a castle")
    middle = make_image(alice, "castle with a moat", parent=root)
    child = make_image(alice, "castle at night", parent=middle)
    client.force_login(alice)
    page = client.get(f"/images/{middle.generation_id}").content.decode()
    chain = page[page.index("Edit chain") :]
    assert chain.index("first draft of a castle") < chain.index("castle with a moat")
    made_from = chain[chain.index("Made from this image") :]
    assert "castle at night" in made_from and f"/images/{child.generation_id}" in made_from


def test_it_leaves_out_of_the_chain_what_the_viewer_may_not_see(client, alice, charlie):
    secret = make_image(charlie, "charlie's secret original")
    mine = make_image(alice, "alice's version", parent=secret)
    client.force_login(alice)
    page = client.get(f"/images/{mine.generation_id}").content.decode()
    assert "charlie" not in page


def test_reuse_settings_refills_the_studio(client, alice, sandbox_model):
    image = make_image(alice, "a teal teapot, studio light", model=sandbox_model)
    client.force_login(alice)
    page = client.get(f"/images/{image.generation_id}").content.decode()
    link = re.search(r'href="([^"]+)">Reuse settings', page).group(1).replace("&amp;", "&")
    assert parse_qs(urlparse(link).query)["model"] == ["sandbox"]
    studio = client.get(link).content.decode()
    assert "a teal teapot, studio light</textarea>" in studio


def test_edit_this_image_opens_the_studio_with_it_as_a_reference(
    client, alice, sandbox_model, no_broker
):
    image = make_image(alice, "a plain chair", model=sandbox_model)
    client.force_login(alice)
    page = client.get(f"/images/{image.generation_id}").content.decode()
    link = re.search(r'href="([^"]+)">Edit this image', page).group(1).replace("&amp;", "&")
    studio = client.get(link).content.decode()
    assert "Editing this image" in studio
    assert f'name="parent" value="{image.generation_id}"' in studio
    r = client.post(
        "/generate",
        {
            "prompt": "paint the chair red",
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
            "parent": str(image.generation_id),
        },
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 200
    job = Generation.objects.get(prompt="paint the chair red")
    assert job.parent_image == image
    assert job.references.count() == 1  # the edited image went up as the reference


def test_remixing_a_teammates_shared_image_charges_the_remixer(
    client, alice, bob, sandbox_model, no_broker
):
    image = make_image(alice, "alice's shared robot", model=sandbox_model, shared=True)
    client.force_login(bob)
    page = client.get(f"/images/{image.generation_id}").content.decode()
    assert "Remix this image" in page and "Shared by Alice" in page
    studio = client.get(f"/?edit={image.generation_id}").content.decode()
    assert "Remixing Alice’s image" in studio
    r = client.post(
        "/generate",
        {
            "prompt": "the robot, dancing",
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
            "parent": str(image.generation_id),
        },
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 200
    job = Generation.objects.get(prompt="the robot, dancing")
    assert job.user == bob and job.parent_image == image
    reserve = LedgerEntry.objects.get(generation=job, kind=LedgerEntry.RESERVE)
    assert reserve.user == bob
    assert not LedgerEntry.objects.filter(user=alice).exists()


def test_it_refuses_to_edit_an_image_the_person_may_not_see(
    client, alice, charlie, sandbox_model, no_broker
):
    image = make_image(alice, "alice only", model=sandbox_model)
    client.force_login(charlie)
    assert b'name="parent"' not in client.get(f"/?edit={image.generation_id}").content
    r = client.post(
        "/generate",
        {
            "prompt": "steal it",
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
            "parent": str(image.generation_id),
        },
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 422
    assert "The image you were editing is no longer available" in r.content.decode()
    assert not Generation.objects.filter(user=charlie).exists()
