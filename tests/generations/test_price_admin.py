"""Prices are typed in dollars per million tokens; malformed prices are refused."""

import pytest

from generations.admin import PriceForm
from tests.factories import make_route

pytestmark = pytest.mark.django_db


def price_form(**data):
    data.setdefault("effective_from", "2026-11-01 00:00:00")
    data.setdefault("per_image", "{}")
    return PriceForm(data=data)


def test_it_takes_token_prices_in_dollars_per_million():
    form = price_form(input_per_mtok="0.30", image_output_per_mtok="30")
    assert form.is_valid(), form.errors
    assert form.cleaned_data["input_per_mtok"] == 300_000
    assert form.cleaned_data["image_output_per_mtok"] == 30_000_000
    assert form.cleaned_data["text_output_per_mtok"] == 0


def test_it_shows_stored_prices_in_dollars():
    route = make_route("nano-banana-pro")
    page = PriceForm(instance=route.prices.get()).as_p()
    assert 'value="120.00"' in page and 'value="2.00"' in page


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"input_per_mtok": "-0.30", "image_output_per_mtok": "30"}, "input_per_mtok",
     "cannot be negative"),
    ({"image_output_per_mtok": "thirty"}, "image_output_per_mtok", "not an amount in US dollars"),
    ({"per_image": '{"8K": 1000}'}, "per_image", "Unknown size '8K'"),
    ({"per_image": '{"1K": -5}'}, "per_image", "whole, non-negative number of micro-USD"),
    ({"per_image": '{"1K": 0.5}'}, "per_image", "whole, non-negative number of micro-USD"),
    ({"per_image": '[39000]'}, "per_image", "Per-image prices are an object"),
    ({"per_image": '{"1K": '}, "per_image", "Enter a valid JSON."),
])
def test_it_refuses_a_malformed_price_with_a_message(data, field, message):
    form = price_form(**data)
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


def test_a_price_that_charges_nothing_is_refused():
    form = price_form()
    assert not form.is_valid()
    assert "mark the route free instead" in form.non_field_errors()[0]


def test_a_per_image_price_alone_is_enough():
    assert price_form(per_image='{"1K": 39000, "default": 39000}').is_valid()


def test_the_route_page_refuses_a_negative_price_and_keeps_the_old_one(client, db):
    from tests.conftest import make_user

    route = make_route("nano-banana")
    client.force_login(make_user("lead@example.com", is_staff=True, is_superuser=True))
    price = route.prices.get()
    data = {"model": route.model_id, "provider": route.provider_id,
            "upstream_model": route.upstream_model, "priority": route.priority,
            "enabled": "on", "prices-TOTAL_FORMS": "1", "prices-INITIAL_FORMS": "1",
            "prices-0-id": price.pk, "prices-0-route": route.pk,
            "prices-0-effective_from_0": "2025-01-01", "prices-0-effective_from_1": "00:00:00",
            "prices-0-input_per_mtok": "-1", "prices-0-image_output_per_mtok": "30",
            "prices-0-per_image": "{}"}
    r = client.post(f"/admin/generations/route/{route.pk}/change/", data)
    assert r.status_code == 200
    assert "cannot be negative" in r.content.decode()
    price.refresh_from_db()
    assert price.input_per_mtok == 300_000
