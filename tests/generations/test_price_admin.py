"""Prices are typed in dollars (per million tokens, or per image by size) and stored as
integer micro-USD; malformed prices are refused."""

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


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"input_per_mtok": "-0.30", "image_output_per_mtok": "30"},
            "input_per_mtok",
            "cannot be negative",
        ),
        (
            {"image_output_per_mtok": "thirty"},
            "image_output_per_mtok",
            "not an amount in US dollars",
        ),
        (
            {"per_image": '{"8K": 0.1}'},
            "per_image",
            "Unknown size '8K': use 512, 1K, 2K, 4K, default.",
        ),
        ({"per_image": '{"1K": -0.05}'}, "per_image", "The 1K price cannot be negative."),
        (
            {"per_image": '{"4K": "cheap"}'},
            "per_image",
            'The 4K price must be a number of US dollars, like 0.134, not "cheap".',
        ),
        ({"per_image": '{"2K": true}'}, "per_image", "The 2K price must be a number"),
        (
            {"per_image": '{"1K": 0.0000001}'},
            "per_image",
            "The 1K price has more than six decimals",
        ),
        (
            {"per_image": "[0.039]"},
            "per_image",
            "Per-image prices are US dollars per image by size",
        ),
        (
            {"per_image": '{"1K": '},
            "per_image",
            "Per-image prices are US dollars per image by size",
        ),
    ],
)
def test_it_refuses_a_malformed_price_with_a_message(data, field, message):
    form = price_form(**data)
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


def test_a_price_that_charges_nothing_is_refused():
    form = price_form()
    assert not form.is_valid()
    assert "mark the route free instead" in form.non_field_errors()[0]


def test_a_per_image_price_alone_is_enough():
    assert price_form(per_image='{"1K": 0.039, "default": 0.039}').is_valid()


def test_it_takes_per_image_prices_in_dollars_and_stores_exact_micro_dollars():
    # 0.134 as a float times a million is 134000.00000000001; decimals keep it exact
    form = price_form(per_image='{"1K": 0.134, "2K": 0.134, "4K": 0.24, "default": 1}')
    assert form.is_valid(), form.errors
    assert form.cleaned_data["per_image"] == {
        "1K": 134_000,
        "2K": 134_000,
        "4K": 240_000,
        "default": 1_000_000,
    }


def test_it_shows_stored_per_image_prices_in_dollars():
    route = make_route("nano-banana-pro")
    price = route.prices.get()
    price.per_image = {"1K": 134_000, "4K": 240_000, "default": 39_000}
    price.save()
    page = PriceForm(instance=price).as_p()
    assert "{&quot;1K&quot;: 0.134, &quot;4K&quot;: 0.24, &quot;default&quot;: 0.039}" in page


def test_empty_prices_read_as_none_or_zero_not_unlimited():
    page = PriceForm().as_p()
    assert "unlimited" not in page
    assert 'placeholder="0"' in page and 'placeholder="none"' in page


def post_route_price(client, route, **price_fields):
    """Post the route's page with its one price changed to ``price_fields``, as an admin."""
    from tests.factories import make_user

    client.force_login(make_user("lead@example.com", is_staff=True, is_superuser=True))
    price = route.prices.get()
    data = {
        "model": route.model_id,
        "provider": route.provider_id,
        "upstream_model": route.upstream_model,
        "priority": route.priority,
        "enabled": "on",
        "prices-TOTAL_FORMS": "1",
        "prices-INITIAL_FORMS": "1",
        "prices-0-id": price.pk,
        "prices-0-route": route.pk,
        "prices-0-effective_from_0": "2025-01-01",
        "prices-0-effective_from_1": "00:00:00",
        **{f"prices-0-{name}": value for name, value in price_fields.items()},
    }
    return client.post(f"/admin/generations/route/{route.pk}/change/", data)


def test_the_route_page_refuses_a_negative_price_and_keeps_the_old_one(client, db):
    route = make_route("nano-banana")
    r = post_route_price(client, route, input_per_mtok="-1", image_output_per_mtok="30")
    assert r.status_code == 200
    assert "cannot be negative" in r.content.decode()
    assert route.prices.get().input_per_mtok == 300_000


def test_the_route_page_saves_per_image_prices_typed_in_dollars(client, db):
    route = make_route("nano-banana")
    r = post_route_price(client, route, per_image='{"1K": 0.134, "4K": 0.24}')
    assert r.status_code == 302, r.content.decode()
    assert route.prices.get().per_image == {"1K": 134_000, "4K": 240_000}
    page = client.get(f"/admin/generations/route/{route.pk}/change/").content.decode()
    assert "{&quot;1K&quot;: 0.134, &quot;4K&quot;: 0.24}" in page
