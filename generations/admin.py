import json
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _

from accounts.admin import ReadOnlyAdmin
from accounts.forms import UsdField, checked_micros, micros_to_usd_text
from accounts.models import format_usd
from generations import (
    admin_advisor,  # noqa: F401  (the cost advisor's admin page)
    discovery,
)
from generations.models import (
    Attempt,
    Generation,
    Image,
    ModelSpec,
    Notice,
    Price,
    Provider,
    ProviderKey,
    Route,
    Upload,
)
from generations.providers.base import provider_class
from generations.resilience import health
from generations.resilience.store import get_store


class RouteInline(admin.TabularInline):
    """A model's routes in failover order: the first usable one is tried first."""

    model = Route
    extra = 0
    fields = ["priority", "provider", "upstream_model", "enabled", "price_now", "retired_at"]
    readonly_fields = ["price_now", "retired_at"]
    ordering = ["priority", "id"]
    show_change_link = True
    verbose_name_plural = _("Routes, in failover order (lower priority is tried first)")

    @admin.display(description=_("Price in force"))
    def price_now(self, route: Route) -> str:
        if not route.pk:
            return ""
        price = route.price_at()
        if price is None:
            return _("free") if route.is_free else _("no price: not used")
        if price.per_image:
            return _("%(prices)s per image") % {
                "prices": ", ".join(
                    f"{size} {format_usd(micros)}" for size, micros in price.per_image.items()
                )
            }
        return _("per token: %(input)s in / %(image)s image output per million") % {
            "input": format_usd(price.input_per_mtok),
            "image": format_usd(price.image_output_per_mtok),
        }


@admin.register(ModelSpec)
class ModelSpecAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "shutdown_date",
        "replacement",
        "size_list",
        "max_reference_images",
        "enabled",
        "sort_order",
    ]
    list_editable = ["enabled", "sort_order"]
    list_filter = ["status", "enabled"]
    inlines = [RouteInline]

    def save_formset(self, request, form, formset, change):
        new = formset.save()
        if formset.model is Route:
            for route in new:
                discovery.give_list_price(route)  # a route added here starts at its list price

    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "enabled", "sort_order"]}),
        (_("Life cycle"), {"fields": ["status", "shutdown_date", "replacement", "notice"]}),
        (
            _("What it can do"),
            {
                "fields": [
                    "aspect_ratios",
                    "sizes",
                    "max_reference_images",
                    "max_images_per_request",
                    "thinking_levels",
                    "grounding",
                    "supports_mask",
                    "fallback",
                ]
            },
        ),
        (_("Estimates"), {"fields": ["image_tokens", "estimate_text_tokens"]}),
        (_("HTTP API"), {"fields": ["aliases"]}),
        (_("Sandbox"), {"fields": ["is_sandbox"], "classes": ["collapse"]}),
    ]

    @admin.display(description=_("sizes"))
    def size_list(self, spec: ModelSpec) -> str:
        return ", ".join(spec.sizes) or _("one size")


class ProviderKeyForm(forms.ModelForm):
    key = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text=_("Stored encrypted and never shown again. Leave empty to keep the current key."),
    )

    class Meta:
        model = ProviderKey
        fields = ["label", "key", "enabled", "exhausted_until", "disabled_reason"]

    def clean(self):
        data = super().clean()
        if not self.instance.pk and not data.get("key"):
            self.add_error("key", _("Paste the API key."))
        return data

    def save(self, commit=True):
        if self.cleaned_data.get("key"):
            self.instance.set_key(self.cleaned_data["key"])
        return super().save(commit)


class ProviderKeyInline(admin.TabularInline):
    model = ProviderKey
    form = ProviderKeyForm
    extra = 0
    readonly_fields = ["hint", "status", "last_used"]

    @admin.display(description=_("Status"))
    def status(self, obj):
        return health.key_status(obj) if obj.pk else ""


class ProviderForm(forms.ModelForm):
    webhook_secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text=_(
            "Replicate: the webhook signing secret (whsec_…, from "
            "GET https://api.replicate.com/v1/webhooks/default/secret); Freepik: the webhook "
            "secret from its API dashboard. Stored encrypted and never shown again; leave "
            "empty to keep the current one."
        ),
    )

    class Meta:
        model = Provider
        widgets = {"options": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})}
        fields = [
            "name",
            "kind",
            "base_url",
            "options",
            "enabled",
            "rpm",
            "rpd",
            "max_concurrency",
            "connect_timeout",
            "read_timeout",
            "webhooks",
            "webhook_secret",
            "webhook_keys_url",
            "is_sandbox",
        ]

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if data.get("webhooks"):
            if kind not in Provider.WEBHOOK_KINDS:
                self.add_error(
                    "webhooks",
                    _("Only fal.ai, Replicate and Freepik providers call back with webhooks."),
                )
            elif (
                kind in ("replicate", "freepik")
                and not data.get("webhook_secret")
                and not self.instance.encrypted_webhook_secret
            ):
                self.add_error(
                    "webhook_secret",
                    _("This provider signs its webhooks: paste the signing secret to check them."),
                )
        return data

    def save(self, commit=True):
        if self.cleaned_data.get("webhook_secret"):
            self.instance.set_webhook_secret(self.cleaned_data["webhook_secret"])
        return super().save(commit)


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "rpm", "rpd", "max_concurrency", "enabled"]
    readonly_fields = ["webhook_address", "key_note"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "key_note", "base_url", "options", "enabled"]}),
        (
            _("Limits per key"),
            {"fields": ["rpm", "rpd", "max_concurrency", "connect_timeout", "read_timeout"]},
        ),
        (
            _("Webhooks (fal.ai, Replicate, Freepik)"),
            {
                "fields": ["webhooks", "webhook_address", "webhook_secret", "webhook_keys_url"],
                "classes": ["collapse"],
            },
        ),
        (_("Sandbox"), {"fields": ["is_sandbox"], "classes": ["collapse"]}),
    ]
    inlines = [ProviderKeyInline]

    @admin.display(description=_("Getting a key"))
    def key_note(self, provider: Provider) -> str:
        """The kind's note: where its key comes from, its documented limits."""
        if provider.pk:
            return provider_class(provider.kind).key_help or "—"
        notes = [(label, provider_class(kind).key_help) for kind, label in Provider.KINDS]
        return format_html_join(
            "", "<p><strong>{}</strong>: {}</p>", [(label, note) for label, note in notes if note]
        )

    @admin.display(description=_("Webhook address"))
    def webhook_address(self, provider: Provider) -> str:
        if not provider.pk or provider.kind not in Provider.WEBHOOK_KINDS:
            return _("Only fal.ai, Replicate and Freepik providers call back.")
        path = reverse("generations:webhook", args=[provider.kind, provider.webhook_token])
        return _(
            "%(url)s — nanoweb gives it to the provider with each request; it must be "
            "reachable from the internet (set NANOWEB_BASE_URL)."
        ) % {"url": settings.NANOWEB_BASE_URL.rstrip("/") + path}

    change_list_template = "admin/generations/provider/change_list.html"
    change_form_template = "admin/generations/provider/change_form.html"

    def get_urls(self):
        health = self.admin_site.admin_view(self.health_view)
        check_keys = self.admin_site.admin_view(self.check_keys_view)
        test = self.admin_site.admin_view(self.test_connection_view)
        return [
            path("health/", health, name="generations_provider_health"),
            path("<int:pk>/test/", test, name="generations_provider_test"),
            path("<int:pk>/check-keys/", check_keys, name="generations_provider_check_keys"),
            *super().get_urls(),
        ]

    def test_connection_view(self, request, pk: int):
        """POST: each key tried with its kind's cheapest call; the answers as messages."""
        provider = get_object_or_404(Provider, pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, provider):
            raise PermissionDenied
        results = discovery.test_connection(provider)
        if not results:
            messages.warning(request, _("This provider has no enabled key to test."))
        for result in results:
            say = messages.success if result.ok else messages.error
            say(request, f"{result.key.label}: {result.message}")
        return redirect("admin:generations_provider_change", provider.pk)

    def check_keys_view(self, request, pk: int):
        """Which image models each key can call, against this provider's routes. A POST
        adds one offered route (the admin's choice); nothing is applied by itself."""
        provider = get_object_or_404(Provider, pk=pk)
        if not self.has_view_permission(request, provider):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_change_permission(request, provider):
                raise PermissionDenied
            model = ModelSpec.objects.filter(slug=request.POST.get("model")).first()
            upstream = (request.POST.get("upstream") or "").strip()
            if model is None or not upstream or len(upstream) > 100:
                messages.error(request, _("Pick the model the new route serves."))
            elif discovery.add_route(provider, model, upstream).prices.exists():
                messages.success(
                    request, _("Added the route for %(upstream)s.") % {"upstream": upstream}
                )
            else:
                messages.warning(
                    request,
                    _(
                        "Added the route for %(upstream)s. It has no price yet: set one, or mark "
                        "it free, before it serves."
                    )
                    % {"upstream": upstream},
                )
            return redirect("admin:generations_provider_check_keys", pk=provider.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Check keys: %(provider)s") % {"provider": provider.name},
            "provider": provider,
            "opts": self.model._meta,
            "report": discovery.check(provider),
            "models": ModelSpec.objects.exclude(status=ModelSpec.SHUT_DOWN).order_by("sort_order"),
        }
        return TemplateResponse(request, "admin/generations/provider/check_keys.html", context)

    def health_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        routes, keys = health.report()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Provider health"),
            "routes": routes,
            "keys": keys,
            "store": get_store().name,
        }
        return TemplateResponse(request, "admin/generations/provider/health.html", context)


PER_IMAGE_KEYS = ("512", "1K", "2K", "4K", "default")
PER_IMAGE_EXAMPLE = '{"1K": 0.134, "4K": 0.24}'
PER_IMAGE_MESSAGES = {
    "invalid": _("The %(size)s price must be a number of US dollars, like 0.134, not %(value)s."),
    "negative": _("The %(size)s price cannot be negative."),
    "precision": _("The %(size)s price has more than six decimals (one micro-dollar)."),
    "too_large": _("The %(size)s price is too large."),
}


def lazy_format(message, **values):
    """``message % values``, translated when shown (a form's label or help text is
    built once, at import, before any language is active)."""
    return lazy(lambda: message % values, str)()


class PerImageUsdField(forms.Field):
    """Flat prices per image by size, typed and shown in US dollars
    (``{"1K": 0.134, "4K": 0.24}``), micro-USD by size in ``cleaned_data``.

    Numbers are read as decimals, never floats, so 0.134 is exactly 134000.
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("initial", dict)
        kwargs.setdefault(
            "widget",
            forms.Textarea(attrs={"rows": 2, "placeholder": _("none"), "spellcheck": "false"}),
        )
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if not isinstance(value, dict):
            return value  # the text as typed, shown again with its error
        if not value:
            return ""
        prices = ", ".join(
            f'"{size}": {micros_to_usd_text(micros)}' for size, micros in value.items()
        )
        return f"{{{prices}}}"

    def to_python(self, value) -> dict[str, int]:
        text = (value or "").strip()
        if not text:
            return {}
        try:
            prices = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError:
            prices = None
        if not isinstance(prices, dict):
            raise ValidationError(
                _("Per-image prices are US dollars per image by size, like %(example)s.")
                % {"example": PER_IMAGE_EXAMPLE},
                code="invalid",
            )
        unknown = [size for size in prices if size not in PER_IMAGE_KEYS]
        if unknown:
            raise ValidationError(
                _("Unknown size %(size)s: use %(sizes)s.")
                % {"size": repr(unknown[0]), "sizes": ", ".join(PER_IMAGE_KEYS)},
                code="unknown_size",
            )
        return {size: self._micros(size, usd) for size, usd in prices.items()}

    @staticmethod
    def _micros(size: str, usd) -> int:
        try:
            if isinstance(usd, bool) or not isinstance(usd, int | Decimal):
                raise ValidationError("not a number", code="invalid")
            return checked_micros(Decimal(usd))
        except ValidationError as exc:
            message = PER_IMAGE_MESSAGES[exc.code] % {
                "size": size,
                "value": json.dumps(usd, default=str),
            }
            raise ValidationError(message, code=exc.code) from None


class PriceForm(forms.ModelForm):
    """Rates typed in US dollars per million tokens; flat prices in US dollars per image."""

    input_per_mtok = UsdField(label=_("Input (USD / 1M tokens)"), required=False, placeholder="0")
    text_output_per_mtok = UsdField(
        label=_("Text + thinking output (USD / 1M tokens)"), required=False, placeholder="0"
    )
    image_output_per_mtok = UsdField(
        label=_("Image output (USD / 1M tokens)"), required=False, placeholder="0"
    )
    search_query_micros = UsdField(
        label=_("Google Search (USD per query)"),
        required=False,
        placeholder="0",
        help_text=_("What each search of a grounded answer costs (Gemini 3: 0.014)."),
    )
    kind = forms.ChoiceField(
        choices=Price.KINDS,
        initial=Price.STANDARD,
        required=False,
        help_text=_("Standard (interactive), or Google's Batch API (economy batches)."),
    )
    per_image = PerImageUsdField(
        label=_("Per image (USD by size)"),
        help_text=lazy_format(
            _(
                "Flat US dollars per image by size (%(sizes)s), e.g. %(example)s. Used "
                "instead of token prices for those sizes."
            ),
            sizes=", ".join(PER_IMAGE_KEYS),
            example=PER_IMAGE_EXAMPLE,
        ),
    )

    class Meta:
        model = Price
        fields = [
            "kind",
            "effective_from",
            "input_per_mtok",
            "text_output_per_mtok",
            "image_output_per_mtok",
            "search_query_micros",
            "per_image",
            "note",
        ]

    def clean_kind(self):
        return self.cleaned_data.get("kind") or Price.STANDARD

    def clean(self):
        data = super().clean()
        for name in (
            "input_per_mtok",
            "text_output_per_mtok",
            "image_output_per_mtok",
            "search_query_micros",
        ):
            data[name] = data.get(name) or 0
        rates = [
            data[n] for n in ("input_per_mtok", "text_output_per_mtok", "image_output_per_mtok")
        ]
        if not self.errors and not any(rates) and not any((data.get("per_image") or {}).values()):
            raise ValidationError(
                _(
                    "This price charges nothing. Enter token or per-image prices, "
                    "or mark the route free instead."
                )
            )
        return data


class PriceInline(admin.TabularInline):
    model = Price
    form = PriceForm
    extra = 0


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "provider",
        "upstream_model",
        "priority",
        "is_free",
        "free_daily_images",
        "enabled",
        "retired_at",
    ]
    list_filter = ["model", "provider", "enabled"]
    readonly_fields = ["retired_at", "retired_reason"]
    inlines = [PriceInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if not change:  # a new route without a price typed in starts at its list price
            discovery.give_list_price(form.instance)


@admin.register(Notice)
class NoticeAdmin(ReadOnlyAdmin):
    """What happened without the admins: routes moved by an upgrade, retired routes."""

    list_display = ["title", "created", "dismissed_at", "dismissed_by"]
    list_filter = [("dismissed_at", admin.EmptyFieldListFilter)]
    fields = readonly_fields = ["title", "message", "created", "dismissed_at", "dismissed_by"]

    def get_urls(self):
        dismiss = self.admin_site.admin_view(self.dismiss_view)
        return [
            path("<int:pk>/dismiss/", dismiss, name="generations_notice_dismiss"),
            *super().get_urls(),
        ]

    def dismiss_view(self, request, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        Notice.objects.active().filter(pk=pk).update(
            dismissed_at=timezone.now(), dismissed_by=request.user
        )
        return redirect("admin:index")


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = readonly_fields = [
        "number",
        "started",
        "route",
        "key_label",
        "http_status",
        "outcome",
        "latency_ms",
        "retry_delay",
        "may_have_been_billed",
        "detail",
    ]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Generation)
class GenerationAdmin(ReadOnlyAdmin):
    list_display = [
        "created",
        "user",
        "model",
        "status",
        "attempts",
        "reserved",
        "actual",
        "short_prompt",
    ]
    list_filter = ["status", "model", "error_kind"]
    search_fields = ["prompt", "user__email", "id", "upstream_id"]
    date_hierarchy = "created"
    inlines = [AttemptInline]

    @admin.display(description=_("Prompt"))
    def short_prompt(self, obj):
        return obj.prompt[:60]

    @admin.display(description=_("Reserved"))
    def reserved(self, obj):
        return format_usd(obj.reserved_micros)

    @admin.display(description=_("Actual"))
    def actual(self, obj):
        return "—" if obj.actual_micros is None else format_usd(obj.actual_micros)


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_display = ["created", "user", "width", "height", "mime_type", "bytes", "starred"]
    search_fields = ["user__email", "sha256"]


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin):
    list_display = ["created", "user", "original_name", "width", "height", "mime_type"]
