"""Adding the queue-style channels and relays from the admin pages, as an admin would:
a relay on a docker-compose host name, a fal key, a Replicate token with its webhook
secret, routes that start at their list price, and each model's routes in failover
order."""

import re

import pytest

from generations.models import ModelSpec, Provider, Route

pytestmark = pytest.mark.django_db


def provider_form(**fields) -> dict:
    data = {
        "name": "Relay",
        "kind": "openai_chat",
        "base_url": "http://relay:8080/v1",
        "enabled": "on",
        "connect_timeout": "10",
        "read_timeout": "120",
        "webhook_keys_url": "",
        "keys-TOTAL_FORMS": "1",
        "keys-INITIAL_FORMS": "0",
        "keys-MIN_NUM_FORMS": "0",
        "keys-MAX_NUM_FORMS": "1000",
        "keys-0-label": "team",
        "keys-0-key": "sk-relay-0123456789abcdef",
        "keys-0-enabled": "on",
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    "url",
    [
        "http://relay:8080/v1",
        "http://relay/v1",
        "https://api.example.com/v1",
        "http://10.0.0.7:3000",
        "http://[::1]:8080/v1",
        "http://my_relay:8080",
    ],
)
def test_a_relay_on_any_host_name_can_be_saved_with_its_key(admin_client, url):
    response = admin_client.post("/admin/generations/provider/add/", provider_form(base_url=url))
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(name="Relay")
    assert provider.base_url == url and provider.keys.get().get_key() == "sk-relay-0123456789abcdef"
    assert provider.webhook_token  # every provider has one, used only with webhooks on


@pytest.mark.parametrize(
    "url",
    [
        "ftp://relay/v1",
        "relay:8080",
        "http://",
        "http://bad host/v1",
        "http://relay:99999",
        "http://r/v1?key=x",
    ],
)
def test_a_base_url_that_is_not_one_is_refused_with_a_reason(admin_client, url):
    response = admin_client.post("/admin/generations/provider/add/", provider_form(base_url=url))
    assert response.status_code == 200
    assert "Enter the provider&#x27;s base URL" in response.content.decode()
    assert not Provider.objects.exists()


def test_replicate_webhooks_need_the_signing_secret_which_is_stored_encrypted(admin_client):
    form = provider_form(
        name="Replicate",
        kind="replicate",
        base_url="https://api.replicate.com/v1",
        webhooks="on",
        **{"keys-0-key": "r8_0123456789abcdefghij"},
    )
    refused = admin_client.post("/admin/generations/provider/add/", form)
    assert refused.status_code == 200 and "paste the signing secret" in refused.content.decode()
    saved = admin_client.post(
        "/admin/generations/provider/add/", {**form, "webhook_secret": "whsec_c2VjcmV0"}
    )
    assert saved.status_code == 302
    provider = Provider.objects.get(name="Replicate")
    assert provider.webhook_secret() == "whsec_c2VjcmV0"
    assert "whsec_" not in provider.encrypted_webhook_secret
    page = admin_client.get(f"/admin/generations/provider/{provider.pk}/change/").content.decode()
    assert f"/hooks/replicate/{provider.webhook_token}" in page
    assert "whsec_c2VjcmV0" not in page  # never shown again


def test_webhooks_are_refused_for_a_kind_that_sends_none(admin_client):
    response = admin_client.post("/admin/generations/provider/add/", provider_form(webhooks="on"))
    assert response.status_code == 200
    assert "Only fal.ai, Replicate and Freepik" in response.content.decode()


def test_a_new_fal_route_starts_at_fal_s_list_price_per_image(admin_client):
    admin_client.post(
        "/admin/generations/provider/add/",
        provider_form(name="fal.ai", kind="fal", base_url="https://queue.fal.run"),
    )
    fal = Provider.objects.get(name="fal.ai")
    pro = ModelSpec.objects.get(slug="nano-banana-pro")
    response = admin_client.post(
        "/admin/generations/route/add/",
        {
            "model": pro.pk,
            "provider": fal.pk,
            "upstream_model": "fal-ai/nano-banana-pro",
            "priority": "50",
            "enabled": "on",
            "prices-TOTAL_FORMS": "0",
            "prices-INITIAL_FORMS": "0",
            "prices-MIN_NUM_FORMS": "0",
            "prices-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    route = Route.objects.get(provider=fal)
    price = route.price_at()
    assert price.per_image == {"1K": 150_000, "2K": 150_000, "4K": 300_000}


def test_a_model_page_lists_its_routes_in_failover_order(admin_client):
    model = ModelSpec.objects.get(slug="nano-banana-pro")
    for name, priority in (("Second", 20), ("First", 10), ("Third", 30)):
        provider = Provider.objects.create(name=name, kind="gemini", base_url="https://x.example")
        Route.objects.create(
            model=model, provider=provider, upstream_model="gemini-3-pro-image", priority=priority
        )
    page = admin_client.get(f"/admin/generations/modelspec/{model.pk}/change/").content.decode()
    assert "Routes, in failover order" in page
    chosen = re.findall(r'<option value="\d+" selected>(First|Second|Third)</option>', page)
    assert chosen == ["First", "Second", "Third"]
    assert "no price: not used" in page


# --- Getting a key, and Test connection (issue 17, part 7) ------------------------------


def test_the_add_page_says_how_to_get_a_key_for_each_kind(admin_client):
    text = admin_client.get("/admin/generations/provider/add/").content.decode()
    assert "Getting a key" in text
    assert "aistudio.google.com/apikey" in text and "replicate.com/account/api-tokens" in text


def test_test_connection_reports_in_plain_words(admin_client):
    from generations.sandbox.server import SandboxConfig, running_sandbox

    config = SandboxConfig(invalid_keys=frozenset({"AIza-revoked"}))
    with running_sandbox(config) as url:
        good = Provider.objects.create(name="Google", kind="gemini", base_url=url)
        key = good.keys.create(label="main")
        key.set_key("AIza-works")
        key.save()
        bad = good.keys.create(label="old")
        bad.set_key("AIza-revoked")
        bad.save()
        page = admin_client.get(f"/admin/generations/provider/{good.pk}/change/").content.decode()
        assert "Test connection" in page and "aistudio.google.com/apikey" in page
        assert admin_client.get(f"/admin/generations/provider/{good.pk}/test/").status_code == 403
        r = admin_client.post(f"/admin/generations/provider/{good.pk}/test/", follow=True)
        said = [str(m) for m in r.context["messages"]]
        assert any(m.startswith("main: The key works; it can call") for m in said), said
        assert any(m.startswith("old: ") and "works" not in m for m in said), said
        assert all("AIza-revoked" not in m for m in said)

        replicate = Provider.objects.create(
            name="Replicate", kind="replicate", base_url=url + "/replicate/v1"
        )
        token = replicate.keys.create(label="main")
        token.set_key("r8_sandbox")
        token.save()
        r = admin_client.post(f"/admin/generations/provider/{replicate.pk}/test/", follow=True)
        said = [str(m) for m in r.context["messages"]]
        assert said and said[0].startswith("main: The key works (Replicate account"), said
