"""“Check keys”: which image models each of a provider's keys can call, compared with the
provider's routes. It only shows: adding a route is the admin's click.

Each key lists the upstream's models (every page). A route whose upstream id no key can
see is flagged (Google answers 404 for it: shut down, or not enabled for the project);
an image model the keys can call that no route of this provider uses is offered, with
the catalog model it stands for when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from generations import pricing
from generations.catalog import GEMINI_PRICES, LIST_PRICES_FROM, channel_price
from generations.crypto import KeyDecryptionError
from generations.models import ModelSpec, Price, Provider, ProviderKey, Route
from generations.providers.base import ProviderError, Timeouts, provider_class


@dataclass
class KeyCheck:
    key: ProviderKey
    models: list[str] = field(default_factory=list)
    error: str = ""  # why the key could not list its models


@dataclass
class RouteCheck:
    route: Route
    missing_for: list[str]  # labels of the keys that cannot see its upstream id

    @property
    def unseen(self) -> bool:
        return bool(self.missing_for)


@dataclass
class Offer:
    upstream: str
    model: ModelSpec | None  # the catalog model it stands for, if any


@dataclass
class Report:
    provider: Provider
    keys: list[KeyCheck]
    routes: list[RouteCheck]
    offers: list[Offer]

    @property
    def listed(self) -> bool:
        """At least one key listed its models (otherwise nothing can be compared)."""
        return any(not k.error for k in self.keys)


def check(provider: Provider) -> Report:
    """List the models of every enabled key (network calls; run outside a transaction)."""
    keys = [_check_key(provider, key) for key in provider.keys.filter(enabled=True)]
    listing = [k for k in keys if not k.error]
    seen = {m for k in listing for m in k.models}
    routes = list(provider.routes.select_related("model").order_by("model__sort_order", "priority"))
    checks = (
        [
            RouteCheck(r, [k.key.label for k in listing if r.upstream_model not in k.models])
            for r in routes
        ]
        if listing
        else [RouteCheck(r, []) for r in routes]
    )
    used = {r.upstream_model for r in routes}
    catalog = _catalog_models()
    offers = [Offer(m, catalog.get(m)) for m in sorted(seen - used)]
    return Report(provider, keys, checks, offers)


def _client(provider: Provider, key: ProviderKey):
    return provider_class(provider.kind)(
        provider.base_url,
        key.get_key(),
        Timeouts(provider.connect_timeout, 30.0),
        options=provider.options,
    )


@dataclass
class ConnectionTest:
    key: ProviderKey
    ok: bool
    message: str


def test_connection(provider: Provider) -> list[ConnectionTest]:
    """Each enabled key tried with the cheapest call its kind allows (the admin's *Test
    connection*): what the provider said, in plain words."""
    results = []
    for key in provider.keys.filter(enabled=True):
        try:
            results.append(ConnectionTest(key, True, _client(provider, key).test_connection()))
        except KeyDecryptionError:
            results.append(
                ConnectionTest(key, False, _("The key no longer decrypts; enter it again."))
            )
        except ProviderError as err:
            results.append(ConnectionTest(key, False, err.message))
    return results


def _check_key(provider: Provider, key: ProviderKey) -> KeyCheck:
    try:
        return KeyCheck(key, models=sorted(set(_client(provider, key).list_models())))
    except KeyDecryptionError:
        return KeyCheck(key, error=_("The key no longer decrypts; enter it again."))
    except ProviderError as err:
        return KeyCheck(key, error=err.message)


def _catalog_models() -> dict[str, ModelSpec]:
    """Upstream id → the model people pick for it: one whose routes call it, else one
    whose aliases name it (read once per check)."""
    models = list(ModelSpec.objects.filter(is_sandbox=False).prefetch_related("routes"))
    found = {alias: m for m in reversed(models) for alias in m.aliases or []}
    found |= {r.upstream_model: m for m in reversed(models) for r in m.routes.all()}
    return found


def add_route(provider: Provider, model: ModelSpec, upstream: str) -> Route:
    """A route the admin chose from the offers: last in the failover order, with Google's
    list price when the catalog knows it (otherwise unpriced, so refused until priced)."""
    last = provider.routes.filter(model=model).order_by("-priority").first()
    route, _created = Route.objects.get_or_create(
        model=model,
        provider=provider,
        upstream_model=upstream,
        defaults={"priority": (last.priority + 10) if last else 100},
    )
    give_list_price(route)
    return route


def give_list_price(route: Route) -> None:
    """A new route with no price starts with the catalog's list price for its channel:
    Google's per-token rates, or a queue-style channel's per-image ones. A relay that
    answers in chat completions starts unpriced: relays charge per call, each its own
    price, which the admin enters."""
    if route.prices.filter(kind=Price.STANDARD).exists():
        return
    kind = route.provider.kind
    fields = channel_price(kind, route.upstream_model)
    if fields is None and kind in ("gemini", "openai") and route.upstream_model in GEMINI_PRICES:
        fields = {**GEMINI_PRICES[route.upstream_model], "note": "Official list price"}
    if fields is not None:
        Price.objects.create(route=route, effective_from=LIST_PRICES_FROM, **fields)
        pricing.give_batch_price(route)
