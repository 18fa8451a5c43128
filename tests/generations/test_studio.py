import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generations.models import DuplicateOffer, Generation
from tests.factories import make_image, page_text

pytestmark = pytest.mark.django_db


def test_it_shows_the_studio_with_the_sandbox_labelled(client, alice, sandbox_model):
    client.force_login(alice)
    r = client.get("/")
    assert r.status_code == 200
    assert b"Sandbox (offline)" in r.content
    assert "Prompt" in page_text(r.content) and b'id="id_prompt"' in r.content


def test_it_sends_anonymous_people_to_sign_in(client):
    r = client.get("/")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]


def test_it_answers_a_submit_with_placeholder_cards(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    r = client.post(
        "/generate",
        {
            "prompt": "a red kite",
            "model": "sandbox",
            "aspect_ratio": "16:9",
            "image_size": "1K",
            "count": 2,
        },
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 200
    assert r.content.count(b'class="card is-queued"') == 2
    assert b"aspect-ratio: 16 / 9" in r.content
    assert Generation.objects.filter(user=alice).count() == 2


def test_it_refuses_an_empty_prompt_and_creates_nothing(client, alice, sandbox_model, no_broker):
    client.force_login(alice)
    r = client.post(
        "/generate",
        {"prompt": "  ", "model": "sandbox", "aspect_ratio": "1:1", "image_size": "1K", "count": 1},
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 422
    assert b"Write a prompt" in r.content
    assert not Generation.objects.exists()


def test_it_refuses_a_broken_reference_file_with_its_name(client, alice, sandbox_model, no_broker):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    bad = SimpleUploadedFile("notes.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    r = client.post(
        "/generate",
        {
            "prompt": "x",
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
            "references": [bad],
        },
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 422
    assert b"notes.svg" in r.content
    assert not Generation.objects.exists()


def test_it_hides_another_persons_job_and_image(client, alice, charlie, sandbox_model, no_broker):
    client.force_login(alice)
    client.post(
        "/generate",
        {
            "prompt": "mine",
            "model": "sandbox",
            "aspect_ratio": "1:1",
            "image_size": "1K",
            "count": 1,
        },
    )
    job = Generation.objects.get(user=alice)
    assert client.post(f"/jobs/{job.pk}/retry").status_code == 400  # alice's own: not failed
    image = make_image(alice)
    assert client.get(f"/images/{image.generation_id}").status_code == 200
    client.force_login(charlie)
    assert client.get(f"/images/{image.generation_id}").status_code == 404
    assert client.get(f"/images/{image.generation_id}/file").status_code == 404
    assert client.post(f"/jobs/{job.pk}/retry").status_code == 404
    assert client.get(f"/images/{job.pk}/file").status_code == 404


def test_it_estimates_cost_as_the_form_changes(client, alice, sandbox_model):
    client.force_login(alice)
    r = client.get("/studio/estimate", {"model": "sandbox", "image_size": "4K", "count": 2})
    assert r.status_code == 200 and b"up to $0." in r.content and b"2 images" in r.content


def test_it_greys_out_what_the_persons_limits_do_not_allow(client, charlie, sandbox_model):
    from tests.factories import make_route

    make_route("nano-banana-pro")
    charlie.allowed_models.set([sandbox_model])
    charlie.max_image_size = "2K"
    charlie.max_images_per_request = 2
    charlie.save()
    client.force_login(charlie)
    page = client.get("/").content.decode()
    assert "Nano Banana Pro — not in your limits" in page
    assert '<option value="nano-banana-pro"  disabled>' in page.replace(" selected", "")
    assert 'value="4K" disabled' in page and 'value="2K" disabled' not in page
    assert 'value="3" disabled' in page and 'value="4" disabled' in page
    assert 'value="2" disabled' not in page


def test_it_says_what_would_be_left_after_the_request(client, charlie, sandbox_model):
    client.force_login(charlie)
    r = client.get("/studio/estimate", {"model": "sandbox", "count": 1, "image_size": "1K"})
    assert "left this month after it" in r.content.decode()
    charlie.monthly_budget_micros = 10_000
    charlie.save()
    r = client.get("/studio/estimate", {"model": "sandbox", "count": 4, "image_size": "4K"})
    assert "More than the $0.01 left in your budget this month." in r.content.decode()


def test_it_offers_the_earlier_result_for_an_identical_request(
    client, alice, sandbox_model, no_broker
):
    from generations import engine

    client.force_login(alice)
    form = {
        "prompt": "a  red kite",
        "model": "sandbox",
        "aspect_ratio": "1:1",
        "image_size": "1K",
        "count": 1,
    }
    client.post("/generate", form, HTTP_HX_REQUEST="true")
    first = Generation.objects.get()
    engine.run_generation(first.pk)

    again = client.post("/generate", {**form, "prompt": "a red kite"}, HTTP_HX_REQUEST="true")
    page = again.content.decode()
    assert again["HX-Retarget"] == "#duplicate-notice"
    assert "You made this exact image" in page and f'href="#job-{first.pk}"' in page
    assert Generation.objects.count() == 1  # nothing paid twice
    offer = DuplicateOffer.objects.get()  # the cost advisor counts offers and savings
    first.refresh_from_db()
    assert (offer.user, offer.saved_micros, offer.declined) == (alice, first.actual_micros, False)

    client.post("/generate", {**form, "again": "1"}, HTTP_HX_REQUEST="true")
    assert Generation.objects.count() == 2  # asked for a new one anyway
    assert DuplicateOffer.objects.get().declined
    client.post("/generate", {**form, "aspect_ratio": "16:9"}, HTTP_HX_REQUEST="true")
    assert Generation.objects.count() == 3  # different parameters are a different request


def test_the_duplicate_guard_can_be_turned_off(client, alice, sandbox_model, no_broker, settings):
    from generations import engine

    settings.NANOWEB_DUPLICATE_WINDOW_SECONDS = 0
    client.force_login(alice)
    form = {
        "prompt": "a kite",
        "model": "sandbox",
        "aspect_ratio": "1:1",
        "image_size": "1K",
        "count": 1,
    }
    client.post("/generate", form, HTTP_HX_REQUEST="true")
    engine.run_generation(Generation.objects.get().pk)
    client.post("/generate", form, HTTP_HX_REQUEST="true")
    assert Generation.objects.count() == 2


def test_the_studio_counts_the_teams_shared_budget_when_it_binds(
    client, alice, bob, team, sandbox_model, no_broker
):
    """Alice's own budget is $20 and 50 images a day; her team shares $0.10 and 30 images,
    and Bob's image in progress holds part of that budget."""
    from accounts import quotas
    from accounts.templatetags.money import usd_short
    from generations import batches
    from tests.factories import submit_one

    team.shared_monthly_budget_micros = 100_000
    team.shared_daily_image_limit = 30
    team.save()
    held = submit_one(sandbox_model, bob).reserved_micros
    left = 100_000 - held
    assert quotas.summary(alice).budget_room.left == left
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert f"{usd_short(left)} of $0.10 team budget this month" in page
    assert "29 of 30 team images left today" in page  # the team's 30 bind before her 50
    r = client.get("/studio/estimate", {"model": "sandbox", "count": 1, "image_size": "1K"})
    assert (
        f"More than the {usd_short(left)} left in team Acme's shared budget" in r.content.decode()
    )
    usage = client.get("/usage").content.decode()
    assert usd_short(left) in usage and "team Acme's shared budget" in usage
    refusal = batches.over_limit(alice, 1, 100_000)
    assert "team Acme's shared monthly budget of $0.10 has" in refusal
    assert "Nothing was started." in refusal


@pytest.mark.parametrize("path", ["/studio/estimate", "/studio/options"])
def test_a_keystroke_costs_the_same_however_many_images_the_person_has(
    client, alice, sandbox_model, no_broker, path
):
    """The estimate and the pickers re-render on every change of the form: they read the
    person's limits once and never load the recent cards."""
    client.force_login(alice)
    params = {"model": "sandbox", "image_size": "2K", "count": 2, "prompt_chars": 40}

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path, params, HTTP_HX_REQUEST="true").status_code == 200
        return len(captured)

    before = queries()
    for n in range(30):
        make_image(alice, prompt=f"image {n}")
    assert queries() == before
    limits_reads = "accounts_user_allowed_models"
    with CaptureQueriesContext(connection) as captured:
        body = client.get(path, params, HTTP_HX_REQUEST="true").content.decode()
    assert sum(limits_reads in q["sql"] for q in captured) == 1
    assert not [q for q in captured if 'FROM "generations_generation"' in q["sql"]]
    assert "up to $" in body and "image 29" not in body
