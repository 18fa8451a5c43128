"""The December 2026 lineup: what a fresh instance offers, what an upgraded one moves, and
how the studio and the admin show a model's life cycle."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from generations.catalog import GEMINI_PRICES
from generations.models import ModelSpec, Notice, Route
from tests.factories import make_route, page_text

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("generations", "0013_failure_vocabulary"),
    ("accounts", "0004_alerts_team_admins_api_tokens"),
]


def migrate(targets=None):
    """Migrate to ``targets`` (default: the latest, where every other test expects to be)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = targets or executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_an_upgrade_moves_routes_off_shut_down_ids_and_says_so():
    old = migrate(BEFORE)
    spec, provider = (
        old.get_model("generations", "ModelSpec"),
        old.get_model("generations", "Provider"),
    )
    route = old.get_model("generations", "Route")
    google = provider.objects.create(name="Google", kind="gemini", base_url="https://g.example")
    relay = provider.objects.create(name="Relay", kind="gemini", base_url="https://r.example")
    pro, flash = spec.objects.get(slug="nano-banana-pro"), spec.objects.get(slug="nano-banana-2")
    route.objects.create(model=pro, provider=google, upstream_model="gemini-3-pro-image-preview")
    route.objects.create(
        model=flash, provider=google, upstream_model="gemini-3.1-flash-image-preview"
    )
    # The relay already has the GA id too: the old route is retired, not duplicated.
    route.objects.create(model=pro, provider=relay, upstream_model="gemini-3-pro-image-preview")
    route.objects.create(model=pro, provider=relay, upstream_model="gemini-3-pro-image")

    migrate()

    ids = set(Route.objects.values_list("provider__name", "upstream_model", "enabled"))
    assert ids == {
        ("Google", "gemini-3-pro-image", True),
        ("Google", "gemini-3.1-flash-image", True),
        ("Relay", "gemini-3-pro-image-preview", False),
        ("Relay", "gemini-3-pro-image", True),
    }
    retired = Route.objects.get(enabled=False)
    assert "shut down on 2026-06-25" in retired.retired_reason and retired.retired_at
    notice = Notice.objects.active().get()
    assert "gemini-3-pro-image-preview → gemini-3-pro-image" in notice.message
    assert (
        "Nano Banana 2 via Google: gemini-3.1-flash-image-preview → gemini-3.1-flash-image"
        in notice.message
    )
    lineup = {m.slug: m for m in ModelSpec.objects.all()}
    assert lineup["nano-banana-2"].status == "deprecated"
    assert lineup["nano-banana-2"].replacement == lineup["nano-banana-2-1"]


def test_a_fresh_instance_offers_the_current_lineup_first_to_last(settings, sandbox_url):
    from generations.providers_setup import configure_providers

    settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL = "AIza-test-0123456789", sandbox_url
    settings.NANOWEB_SANDBOX = "off"
    configure_providers()
    offered = list(ModelSpec.objects.available().values_list("slug", "status"))
    assert offered == [
        ("nano-banana-2-1", "ga"),
        ("nano-banana-pro", "ga"),
        ("nano-banana-2", "deprecated"),
        ("nano-banana-2-lite", "ga"),
        ("nano-banana", "ga"),
    ]
    upstream = dict(Route.objects.values_list("model__slug", "upstream_model"))
    assert upstream["nano-banana-2-1"] == "gemini-nano-banana-2.1"
    assert upstream["nano-banana-pro"] == "gemini-3-pro-image"
    nb21 = ModelSpec.objects.get(slug="nano-banana-2-1")
    assert {"1:8", "8:1", "1:4", "4:1"} <= set(nb21.aspect_ratios) and len(nb21.aspect_ratios) == 14
    assert nb21.sizes == ["1K", "2K", "4K"] and nb21.max_reference_images == 14
    price = Route.objects.get(model=nb21).price_at()
    rates = (price.input_per_mtok, price.text_output_per_mtok, price.image_output_per_mtok)
    assert rates == (1_500_000, 7_500_000, 30_000_000)
    assert price.search_query_micros == 14_000
    assert GEMINI_PRICES["gemini-nano-banana-2.1"]["search_query_micros"] == 14_000


def test_the_studio_marks_a_deprecated_model_and_names_its_replacement(client, alice, sandbox_url):
    make_route("nano-banana-2", base_url=sandbox_url)
    make_route("nano-banana-2-1", base_url=sandbox_url, provider_name="Test upstream")
    client.force_login(alice)
    page = client.get("/", {"model": "nano-banana-2"}).content.decode()
    text = page_text(page)
    assert "Nano Banana 2 — deprecated" in text
    assert "Deprecated: use Nano Banana 2.1 instead." in text
    options = page_text(client.get("/studio/options", {"model": "nano-banana-2-1"}).content)
    assert "Deprecated" not in options


def test_admins_see_notices_and_shutdowns_until_dismissed(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    Notice.objects.create(title="Routes moved from shut-down model ids", message="Pro: a → b")
    ModelSpec.objects.filter(slug="nano-banana-2").update(
        shutdown_date=timezone.localdate() + timedelta(days=12)
    )
    text = page_text(admin_client.get("/admin/").content)
    assert "Routes moved from shut-down model ids" in text and "Pro: a → b" in text
    assert "Nano Banana 2 (deprecated) is shut down by its provider on" in text
    assert "Move its users and routes to Nano Banana 2.1." in text
    notice = Notice.objects.get()
    assert admin_client.get(f"/admin/generations/notice/{notice.pk}/dismiss/").status_code == 405
    r = admin_client.post(f"/admin/generations/notice/{notice.pk}/dismiss/")
    assert r.status_code == 302
    assert "Routes moved" not in page_text(admin_client.get("/admin/").content)
    notice.refresh_from_db()
    assert notice.dismissed_at and notice.dismissed_by.is_superuser
