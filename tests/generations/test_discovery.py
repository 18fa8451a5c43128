"""Check keys: what each key of a provider can call, against its routes, from the
sandbox's real models.list (every page). It shows; adding a route is the admin's click."""

import pytest

from generations import discovery
from generations.models import Provider, ProviderKey, Route
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import make_route, page_text

pytestmark = pytest.mark.django_db

SEES_ALL, BLIND = "key-sees-everything-0001", "key-blind-to-pro-00002"


@pytest.fixture
def upstream():
    config = SandboxConfig(hidden_models={BLIND: {"gemini-3-pro-image"}})
    with running_sandbox(config) as url:
        yield url


@pytest.fixture
def google(upstream):
    make_route("nano-banana-pro", base_url=upstream, provider_name="Google", key=SEES_ALL)
    make_route("nano-banana-2-1", base_url=upstream, provider_name="Google")
    provider = Provider.objects.get(name="Google")
    blind = ProviderKey(provider=provider, label="second")
    blind.set_key(BLIND)
    blind.save()
    return provider


def test_it_lists_each_keys_image_models_and_flags_what_a_key_cannot_see(google):
    report = discovery.check(google)
    calls = {k.key.label: k.models for k in report.keys}
    assert "gemini-3-pro-image" in calls["primary"] and "gemini-3-pro-image" not in calls["second"]
    assert "gemini-3.5-flash" not in calls["primary"]  # a text model: not offered
    unseen = {r.route.upstream_model: r.missing_for for r in report.routes}
    assert unseen == {"gemini-3-pro-image": ["second"], "gemini-nano-banana-2.1": []}
    offered = {o.upstream for o in report.offers}
    assert {
        "gemini-3.1-flash-image",
        "gemini-3.1-flash-lite-image",
        "gemini-2.5-flash-image",
    } <= offered
    assert "gemini-nano-banana-2.1" not in offered  # a route uses it already
    assert Route.objects.count() == 2  # nothing added by itself


def test_a_key_the_upstream_refuses_says_why(google):
    bad = ProviderKey(provider=google, label="revoked")
    bad.set_key("not-a-real-key")
    bad.save()
    with running_sandbox(SandboxConfig(invalid_keys={"not-a-real-key"})) as url:
        Provider.objects.filter(pk=google.pk).update(base_url=url)
        google.refresh_from_db()
        report = discovery.check(google)
    assert {k.key.label: k.error for k in report.keys}["revoked"] == (
        "The provider rejected the API key."
    )


def test_the_page_shows_it_and_adds_only_the_route_the_admin_picks(admin_client, google):
    page = admin_client.get(f"/admin/generations/provider/{google.pk}/check-keys/")
    text = page_text(page.content)
    assert page.status_code == 200
    assert "Not visible to second" in text and "gemini-3.1-flash-lite-image" in text
    r = admin_client.post(
        f"/admin/generations/provider/{google.pk}/check-keys/",
        {"upstream": "gemini-3.1-flash-lite-image", "model": "nano-banana-2-lite"},
    )
    assert r.status_code == 302
    route = Route.objects.get(upstream_model="gemini-3.1-flash-lite-image")
    assert (route.model.slug, route.provider, route.enabled) == ("nano-banana-2-lite", google, True)
    assert route.price_at().image_output_per_mtok == 30_000_000
    bad = admin_client.post(
        f"/admin/generations/provider/{google.pk}/check-keys/",
        {"upstream": "x", "model": "no-such-model"},
    )
    assert bad.status_code == 302 and Route.objects.count() == 3
