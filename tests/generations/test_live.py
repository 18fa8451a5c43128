"""The page-level poller: one request answers for every card in flight."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generations import engine
from generations.models import Generation
from tests.factories import submit_one

pytestmark = pytest.mark.django_db


def _cards(*jobs, sig="stale"):
    return ",".join(f"{j.pk}:{sig}" for j in jobs)


def test_it_returns_every_changed_card_in_one_response(client, alice, sandbox_model, no_broker):
    jobs = [submit_one(sandbox_model, alice, prompt=f"kite {i}") for i in range(3)]
    engine.fail(jobs[0], "blocked", "Blocked.")
    client.force_login(alice)
    r = client.get("/live", {"cards": _cards(*jobs)})
    body = r.content.decode()
    assert r.status_code == 200
    assert body.count('hx-swap-oob="true"') == 4  # three cards and the nav counter
    assert "Blocked by the safety filter" in body
    assert "Generating (2)" in body


def test_it_leaves_out_cards_that_did_not_change(client, alice, sandbox_model, no_broker):
    from generations.live import annotate_positions, signature

    job = submit_one(sandbox_model, alice)
    (job,) = annotate_positions([job])
    client.force_login(alice)
    r = client.get("/live", {"cards": f"{job.pk}:{signature(job)}"})
    assert f'id="job-{job.pk}"' not in r.content.decode()
    assert "Generating (1)" in r.content.decode()


def test_it_shows_the_position_in_line(client, alice, bob, sandbox_model, no_broker):
    submit_one(sandbox_model, bob, prompt="first")
    mine = submit_one(sandbox_model, alice, prompt="second")
    client.force_login(alice)
    r = client.get("/live", {"cards": _cards(mine)})
    assert "Queued · 2nd in line" in r.content.decode()


def test_its_query_count_does_not_grow_with_the_cards(client, alice, sandbox_model, no_broker):
    few = [submit_one(sandbox_model, alice, prompt=f"a {i}") for i in range(2)]
    many = few + [submit_one(sandbox_model, alice, prompt=f"b {i}") for i in range(10)]
    client.force_login(alice)
    client.get("/live", {"cards": _cards(*few)})  # warm the session and the catalogue
    with CaptureQueriesContext(connection) as small:
        client.get("/live", {"cards": _cards(*few)})
    with CaptureQueriesContext(connection) as large:
        r = client.get("/live", {"cards": _cards(*many)})
    assert r.content.decode().count('class="card is-queued"') == 12
    assert len(large) == len(small)


def test_it_ignores_other_peoples_cards(client, alice, bob, charlie, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice, prompt="private")
    for other in (bob, charlie):
        client.force_login(other)
        r = client.get("/live", {"cards": _cards(job)})
        assert r.status_code == 200
        assert "private" not in r.content.decode()
        assert "Generating (0)" in r.content.decode()


def test_it_ignores_malformed_card_lists(client, alice):
    client.force_login(alice)
    r = client.get("/live", {"cards": "nonsense,:,123:abc", "batch": "not-a-uuid"})
    assert r.status_code == 200 and "Generating (0)" in r.content.decode()


def test_it_sends_anonymous_people_to_sign_in(client):
    assert client.get("/live").status_code == 302


def test_the_navigation_counts_jobs_in_flight_on_every_page(
    client, alice, sandbox_model, no_broker
):
    for i in range(2):
        submit_one(sandbox_model, alice, prompt=f"nav {i}")
    client.force_login(alice)
    for url in ("/", "/batches", reverse("usage")):
        page = client.get(url, follow=True).content.decode()
        assert "Generating (2)" in page, url


def test_studio_cards_do_not_poll_one_by_one(client, alice, sandbox_model, no_broker):
    submit_one(sandbox_model, alice)
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "every 1s" not in page and "data-live=" in page


def test_a_running_card_shows_elapsed_time(client, alice, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice)
    engine.claim(job.pk)
    client.force_login(alice)
    r = client.get("/live", {"cards": _cards(job)})
    assert 'Generating · <span class="elapsed"' in r.content.decode()
    assert Generation.objects.get().status == "running"


def test_a_job_waiting_for_a_rate_limit_says_so(client, alice, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice)
    Generation.objects.filter(pk=job.pk).update(stage="waiting for rate limit")
    client.force_login(alice)
    r = client.get("/live", {"cards": _cards(job)})
    assert "Waiting for rate limit" in r.content.decode()
    assert "in line" not in r.content.decode()


def test_a_finished_card_offers_star_edit_reuse_and_download(
    client, alice, sandbox_model, no_broker
):
    """Issue 20, defect 10: a studio card offered only Download."""
    job = submit_one(sandbox_model, alice, prompt="a red kite")
    engine.run_generation(job.pk)
    queued = submit_one(sandbox_model, alice, prompt="a blue kite")
    client.force_login(alice)
    body = client.get("/live", {"cards": _cards(job, queued)}).content.decode()
    card = body[body.index(f'id="job-{job.pk}"') :]
    card = card[: card.index("</article>")]
    assert f'hx-post="/images/{job.pk}/star"' in card and 'aria-label="Star"' in card
    assert f"edit={job.pk}" in card and ">Edit</a>" in card
    assert "prompt=a+red+kite" in card and ">Reuse settings</a>" in card
    assert f"/images/{job.pk}/file?download=1" in card
    waiting = body[body.index(f'id="job-{queued.pk}"') :]
    assert f'hx-post="/jobs/{queued.pk}/cancel"' in waiting[: waiting.index("</article>")]
    r = client.post(f"/images/{job.pk}/star", HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and 'aria-label="Unstar"' in r.content.decode()
