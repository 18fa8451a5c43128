"""Start-up configuration from the environment is idempotent and survives lost
encryption keys."""

import pytest
from cryptography.fernet import Fernet

from generations import crypto, pricing
from generations.models import Price, Provider, ProviderKey, Route
from generations.providers_setup import GOOGLE, configure_providers

pytestmark = pytest.mark.django_db


@pytest.fixture
def gemini_env(settings):
    settings.GEMINI_API_KEY = "AIza-real-key-0123456789"
    settings.NANOWEB_SANDBOX = "auto"
    return settings


def test_a_gemini_key_creates_the_google_provider_and_routes_once(gemini_env):
    configure_providers()
    configure_providers()
    google = Provider.objects.get(name=GOOGLE)
    assert google.keys.get().get_key() == "AIza-real-key-0123456789"
    assert set(Route.objects.filter(provider=google).values_list("model__slug", flat=True)) == {
        "nano-banana-2-1",
        "nano-banana-pro",
        "nano-banana-2",
        "nano-banana-2-lite",
        "nano-banana",
    }
    assert all(r.price_at() for r in Route.objects.filter(provider=google))
    assert not Provider.objects.get(is_sandbox=True).enabled  # a real key turns it off


def test_google_routes_start_with_a_batch_price_at_half_and_a_relay_gets_none(gemini_env):
    configure_providers()
    configure_providers()  # idempotent: still one Batch price per route
    for route in Route.objects.filter(provider__name=GOOGLE):
        batch = pricing.batch_price(route)
        standard = route.price_at()
        assert batch.input_per_mtok == standard.input_per_mtok // 2
        assert batch.image_output_per_mtok == standard.image_output_per_mtok // 2
        assert route.prices.filter(kind=Price.BATCH).count() == 1
    gemini_env.GEMINI_BASE_URL = "https://relay.example.com"
    Price.objects.filter(kind=Price.BATCH).delete()
    configure_providers()
    relayed = Price.objects.filter(kind=Price.BATCH, route__provider__name=GOOGLE)
    assert not relayed.exists()  # relays speak no Batch API


def test_the_base_url_follows_the_environment(gemini_env):
    configure_providers()
    gemini_env.GEMINI_BASE_URL = "https://relay.example.com"
    configure_providers()
    assert Provider.objects.get(name=GOOGLE).base_url == "https://relay.example.com"


def test_start_up_replaces_keys_that_no_longer_decrypt(gemini_env):
    configure_providers()
    gemini_env.NANOWEB_SANDBOX = "on"
    configure_providers()
    gemini_env.NANOWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # var/ was lost
    crypto.reset_cache()
    try:
        with pytest.raises(crypto.KeyDecryptionError):
            ProviderKey.objects.get(provider__name=GOOGLE).get_key()
        configure_providers()  # does not crash
        assert ProviderKey.objects.get(provider__name=GOOGLE).get_key() == (
            "AIza-real-key-0123456789"
        )
        assert ProviderKey.objects.get(provider__is_sandbox=True).get_key()
    finally:
        crypto.reset_cache()
