"""The batch pages' economy parts: both prices before confirming, the choice, the
upstream state and the time waited, cancel at Google, "run the rest now"."""

import pytest

from generations import economy, pricing, queue
from generations.models import Batch, Generation, Price, Route
from generations.models.jobs import UpstreamBatch

pytestmark = [pytest.mark.django_db]

SETTINGS = {"model": "sandbox", "aspect_ratio": "1:1", "image_size": "1K", "count": "1"}


@pytest.fixture
def economy_route(sandbox_model, monkeypatch) -> Route:
    monkeypatch.setattr(queue, "enqueue", lambda ids, **kw: None)
    monkeypatch.setattr(queue, "run_economy_batch", lambda ids, **kw: None)
    route = Route.objects.get(model=sandbox_model)
    assert pricing.batch_price(route) is not None  # start-up gives it one
    return route


def post(client, url: str, **data):
    return client.post(url, {**SETTINGS, **data}, HTTP_HX_REQUEST="true")


def test_it_shows_both_prices_before_confirming(client, alice, economy_route):
    client.force_login(alice)
    page = post(client, "/batches/check", prompts="a fox\na hare").content.decode()
    assert "Economy — half price, ready within 24 h" in page
    assert 'value="economy"' in page and "saves $" in page and 'value="standard"' in page
    assert Generation.objects.count() == 0


def test_it_says_why_economy_is_not_offered(client, alice, sandbox_model):
    Price.objects.filter(kind=Price.BATCH).delete()  # the sandbox route's, from start-up
    client.force_login(alice)
    page = post(client, "/batches/check", prompts="a fox").content.decode()
    assert "Gemini Batch API route" in page
    assert 'value="economy" disabled' in page


def test_it_starts_an_economy_batch_and_shows_it_waiting_at_google(client, alice, economy_route):
    client.force_login(alice)
    r = post(client, "/batches/start", prompts="a fox\na hare", mode="economy")
    assert r.status_code == 200
    batch = Batch.objects.get()
    assert batch.economy and batch.generations.count() == 2
    UpstreamBatch.objects.update(phase="waiting", state="BATCH_STATE_RUNNING", polls=3)
    UpstreamBatch.objects.update(submitted=batch.created)
    page = client.get(f"/batches/{batch.pk}").content.decode()
    assert "Running at Google" in page and "waited" in page and "checked 3 times" in page
    assert "Cancel the economy batch" in page


def test_the_batch_page_offers_the_rest_at_the_normal_price_after_expiry(
    client, alice, economy_route
):
    client.force_login(alice)
    post(client, "/batches/start", prompts="a fox\na hare", mode="economy")
    batch = Batch.objects.get()
    upstream = batch.upstream_batches.get()
    UpstreamBatch.objects.update(state="BATCH_STATE_EXPIRED", phase="finished")
    for gen in batch.generations.all():
        economy.fail(gen, "deadline", str(economy.EXPIRED_MESSAGE))
    page = client.get(f"/batches/{batch.pk}").content.decode()
    assert "Run the rest now at the normal price (2 images)" in page
    r = client.post(f"/batches/{batch.pk}/retry", {"expired_only": "1"})
    assert r.status_code == 302
    assert batch.generations.filter(status="queued", upstream_batch=None).count() == 2
    assert not upstream.rows.filter(batch=batch).exists()  # the new jobs took their place
    assert "Run the rest now" not in client.get(f"/batches/{batch.pk}").content.decode()


def test_charlie_cannot_see_alices_economy_batch(client, alice, charlie, economy_route):
    client.force_login(alice)
    post(client, "/batches/start", prompts="a fox", mode="economy")
    client.force_login(charlie)
    assert client.get(f"/batches/{Batch.objects.get().pk}").status_code == 404
