"""What the instance can call: the models people pick (with their life cycle), the
upstream providers and their keys, and the routes between them with versioned prices."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from generations import crypto

ASPECT_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
# Ratios some newer models add (Nano Banana 2 and 2.1): very tall and very wide.
EXTRA_ASPECT_RATIOS = ["1:4", "4:1", "1:8", "8:1"]
ALL_ASPECT_RATIOS = ASPECT_RATIOS + EXTRA_ASPECT_RATIOS


class ModelSpecQuerySet(models.QuerySet):
    def available(self):
        """Models people can pick: enabled, not shut down, with at least one usable route."""
        return (
            self.filter(enabled=True, routes__enabled=True, routes__provider__enabled=True)
            .exclude(status=ModelSpec.SHUT_DOWN)
            .distinct()
        )

    def shutting_down(self, within_days: int = 30, today=None):
        """Models in use whose provider turns them off within ``within_days`` (or already
        past the date but not marked shut down): what admins are warned about."""
        today = today or timezone.localdate()
        return self.filter(
            enabled=True,
            shutdown_date__isnull=False,
            shutdown_date__lte=today + timedelta(days=within_days),
        ).exclude(status=ModelSpec.SHUT_DOWN)


class ModelSpec(models.Model):
    """What people pick in the studio, with what it can do and where it is in its life.

    Everything here is data an admin edits: a new model is a new row (and a route), never
    a code change."""

    PREVIEW, GA, DEPRECATED, SHUT_DOWN = "preview", "ga", "deprecated", "shut_down"
    STATUSES = [
        (PREVIEW, gettext_lazy("Preview")),
        (GA, gettext_lazy("Generally available")),
        (DEPRECATED, gettext_lazy("Deprecated")),
        (SHUT_DOWN, gettext_lazy("Shut down")),
    ]

    slug = models.SlugField(unique=True, verbose_name=gettext_lazy("slug"))
    name = models.CharField(max_length=100, verbose_name=gettext_lazy("name"))
    description = models.CharField(
        max_length=200, blank=True, verbose_name=gettext_lazy("description")
    )
    aspect_ratios = models.JSONField(default=list, verbose_name=gettext_lazy("aspect ratios"))
    sizes = models.JSONField(
        default=list,
        blank=True,
        help_text=gettext_lazy('e.g. ["1K", "2K", "4K"]; empty when the model takes no size.'),
        verbose_name=gettext_lazy("sizes"),
    )
    max_reference_images = models.PositiveSmallIntegerField(
        default=3, verbose_name=gettext_lazy("max reference images")
    )
    supports_mask = models.BooleanField(
        default=False,
        help_text=gettext_lazy(
            "Takes an edit mask (a PNG whose transparent pixels mark what to change). "
            "Only for a model whose every route is an OpenAI Images provider that accepts "
            "masks (gpt-image-*, dall-e-2); masked jobs never fail over to other kinds."
        ),
        verbose_name=gettext_lazy("supports mask"),
    )
    max_images_per_request = models.PositiveSmallIntegerField(
        default=4, verbose_name=gettext_lazy("max images per request")
    )
    # Output tokens one image costs at each size ("default" when the model has no size).
    image_tokens = models.JSONField(default=dict, verbose_name=gettext_lazy("image tokens"))
    # Allowance for text + thinking output per image, used only for the worst-case estimate.
    estimate_text_tokens = models.PositiveIntegerField(
        default=400, verbose_name=gettext_lazy("estimate text tokens")
    )
    thinking_levels = models.JSONField(
        default=list,
        blank=True,
        help_text=gettext_lazy(
            'Thinking levels it takes, e.g. ["minimal", "medium", "high"]; empty when it '
            "takes none."
        ),
        verbose_name=gettext_lazy("thinking levels"),
    )
    grounding = models.BooleanField(
        default=False,
        help_text=gettext_lazy("Takes Google Search grounding."),
        verbose_name=gettext_lazy("grounding"),
    )
    status = models.CharField(
        max_length=10, choices=STATUSES, default=GA, verbose_name=gettext_lazy("status")
    )
    shutdown_date = models.DateField(
        null=True,
        blank=True,
        help_text=gettext_lazy(
            "The provider's announced (earliest) shutdown date; admins are warned 30 days before."
        ),
        verbose_name=gettext_lazy("shutdown date"),
    )
    replacement = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=gettext_lazy("What to use instead once it is deprecated or shut down."),
        verbose_name=gettext_lazy("replacement"),
    )
    notice = models.CharField(
        max_length=200,
        blank=True,
        help_text=gettext_lazy("Shown beside the model in the studio, e.g. who may still use it."),
        verbose_name=gettext_lazy("notice"),
    )
    aliases = models.JSONField(
        default=list,
        blank=True,
        help_text=gettext_lazy(
            "Other names the HTTP API accepts for this model, e.g. a shut-down preview id."
        ),
        verbose_name=gettext_lazy("aliases"),
    )
    is_sandbox = models.BooleanField(default=False, verbose_name=gettext_lazy("is sandbox"))
    enabled = models.BooleanField(default=True, verbose_name=gettext_lazy("enabled"))
    sort_order = models.PositiveSmallIntegerField(
        default=0, verbose_name=gettext_lazy("sort order")
    )
    fallback = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=gettext_lazy(
            "When none of this model's routes can serve, let this model make the "
            "image instead (only if it supports the request and costs no more than was "
            "reserved). The card says which model made it."
        ),
        verbose_name=gettext_lazy("fallback"),
    )

    objects = ModelSpecQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "name"]
        verbose_name = gettext_lazy("model")
        verbose_name_plural = gettext_lazy("models")

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """The name people see: the sandbox says it is not a real model."""
        return _("Sandbox (offline)") if self.is_sandbox else self.name

    @property
    def is_deprecated(self) -> bool:
        return self.status == self.DEPRECATED

    @property
    def lifecycle_note(self) -> str:
        """What the studio says beside a deprecated model, or its admin notice."""
        if self.status == self.DEPRECATED:
            if self.replacement_id:
                return _("Deprecated: use %(replacement)s instead.") % {
                    "replacement": self.replacement.label
                }
            return _("Deprecated by its provider.")
        return self.notice

    def image_tokens_for(self, size: str | None) -> int:
        return int(self.image_tokens.get(size or "default") or self.image_tokens.get("default", 0))

    def default_size(self) -> str | None:
        return self.sizes[0] if self.sizes else None


HOST_LABEL = r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"{HOST_LABEL}(?:\.{HOST_LABEL})*\.?", re.IGNORECASE)
HOST_IP = re.compile(r"[0-9a-f:.]+", re.IGNORECASE)  # IPv4, or IPv6 (urlsplit drops the [])


def validate_base_url(value: str) -> None:
    """An http(s) URL whose host may be a single label: a relay reached as
    ``http://relay:8080`` (a docker-compose service name) is as good as a domain, which
    Django's URLValidator refuses."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
        port_ok = True
    except ValueError:
        port_ok = False
    host = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or not (HOST_NAME.fullmatch(host) or HOST_IP.fullmatch(host))
        or not port_ok
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in value)
    ):
        raise ValidationError(
            _(
                "Enter the provider's base URL, such as https://api.example.com/v1 or "
                "http://relay:8080 (http or https, no query string)."
            ),
            code="invalid",
        )


class Provider(models.Model):
    """An upstream endpoint (official API, a relay, a queue-style service or the sandbox)."""

    KINDS = [
        ("gemini", gettext_lazy("Gemini generateContent (Google, or a relay speaking it)")),
        ("openai", gettext_lazy("OpenAI Images (generations / edits)")),
        (
            "openai_chat",
            gettext_lazy("OpenAI chat completions with the image in the message (relays)"),
        ),
        ("fal", gettext_lazy("fal.ai queue")),
        ("replicate", gettext_lazy("Replicate predictions")),
        ("leonardo", gettext_lazy("Leonardo.ai generations")),
        ("freepik", gettext_lazy("Freepik (Magnific) API tasks")),
        ("higgsfield", gettext_lazy("Higgsfield platform API")),
        ("hf_space", gettext_lazy("Hugging Face Space (Gradio)")),
        ("stability", gettext_lazy("Stability AI Stable Image")),
        ("comfyui", gettext_lazy("ComfyUI server (a workflow of yours)")),
    ]
    QUEUED_KINDS = frozenset({"fal", "replicate", "leonardo", "freepik", "higgsfield", "comfyui"})
    WEBHOOK_KINDS = frozenset({"fal", "replicate", "freepik"})

    name = models.CharField(max_length=100, unique=True, verbose_name=gettext_lazy("name"))
    kind = models.CharField(
        max_length=20, choices=KINDS, default="gemini", verbose_name=gettext_lazy("kind")
    )
    base_url = models.CharField(
        max_length=300,
        validators=[validate_base_url],
        help_text=gettext_lazy(
            "Google: https://generativelanguage.googleapis.com · OpenAI or a relay: "
            "https://…/v1 · fal.ai: https://queue.fal.run · Replicate: "
            "https://api.replicate.com/v1 · Leonardo: https://cloud.leonardo.ai/api/rest · "
            "Freepik: https://api.freepik.com · "
            "Higgsfield: https://platform.higgsfield.ai · Stability: https://api.stability.ai · a "
            "Space: https://owner-name.hf.space · ComfyUI: http://host:8188"
        ),
        verbose_name=gettext_lazy("base URL"),
    )
    connect_timeout = models.FloatField(default=10.0, verbose_name=gettext_lazy("connect timeout"))
    read_timeout = models.FloatField(default=120.0, verbose_name=gettext_lazy("read timeout"))
    rpm = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=gettext_lazy("Requests per minute per key."),
        verbose_name=gettext_lazy("RPM"),
    )
    rpd = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=gettext_lazy("Requests per day per key."),
        verbose_name=gettext_lazy("RPD"),
    )
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=gettext_lazy(
            "Calls in flight per key; for fal.ai and Replicate, requests submitted and "
            "not finished upstream per key."
        ),
        verbose_name=gettext_lazy("max concurrency"),
    )
    webhooks = models.BooleanField(
        default=False,
        help_text=gettext_lazy(
            "fal.ai, Replicate and Freepik: ask the provider to call this instance when a "
            "request finishes (NANOWEB_BASE_URL must be reachable from the internet). Polling "
            "stays the fallback."
        ),
        verbose_name=gettext_lazy("webhooks"),
    )
    webhook_token = models.CharField(
        max_length=43, blank=True, editable=False, verbose_name=gettext_lazy("webhook token")
    )
    encrypted_webhook_secret = models.TextField(
        blank=True, editable=False, verbose_name=gettext_lazy("encrypted webhook secret")
    )
    webhook_keys_url = models.CharField(
        max_length=300,
        blank=True,
        validators=[validate_base_url],
        help_text=gettext_lazy(
            "fal.ai: where its webhook signing keys are published; empty for fal's own "
            "(https://rest.alpha.fal.ai/.well-known/jwks.json)."
        ),
        verbose_name=gettext_lazy("webhook keys URL"),
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text=gettext_lazy(
            "Settings of this kind of provider, e.g. a Hugging Face Space's id and "
            "argument names, a ComfyUI workflow, Higgsfield's field mapping (see the note "
            "for the kind above; the README lists each)."
        ),
        verbose_name=gettext_lazy("options"),
    )
    is_sandbox = models.BooleanField(default=False, verbose_name=gettext_lazy("is sandbox"))
    enabled = models.BooleanField(default=True, verbose_name=gettext_lazy("enabled"))

    class Meta:
        verbose_name = gettext_lazy("provider")
        verbose_name_plural = gettext_lazy("providers")

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.webhook_token:
            self.webhook_token = secrets.token_urlsafe(32)
        super().save(*args, **kwargs)

    @property
    def is_queued(self) -> bool:
        return self.kind in self.QUEUED_KINDS

    def set_webhook_secret(self, clear: str) -> None:
        self.encrypted_webhook_secret = crypto.encrypt(clear.strip()) if clear.strip() else ""

    def webhook_secret(self) -> str:
        return (
            crypto.decrypt(self.encrypted_webhook_secret) if self.encrypted_webhook_secret else ""
        )


class ProviderKeyQuerySet(models.QuerySet):
    def usable(self, now=None):
        now = now or timezone.now()
        return self.filter(enabled=True).filter(
            Q(exhausted_until__isnull=True) | Q(exhausted_until__lte=now)
        )


class ProviderKey(models.Model):
    """An API key, encrypted at rest; the clear value is never shown again."""

    provider = models.ForeignKey(
        Provider,
        on_delete=models.CASCADE,
        related_name="keys",
        verbose_name=gettext_lazy("provider"),
    )
    label = models.CharField(max_length=100, verbose_name=gettext_lazy("label"))
    encrypted_key = models.TextField(editable=False, verbose_name=gettext_lazy("encrypted key"))
    hint = models.CharField(
        max_length=20,
        editable=False,
        help_text=gettext_lazy("Last characters, for recognition."),
        verbose_name=gettext_lazy("hint"),
    )
    enabled = models.BooleanField(default=True, verbose_name=gettext_lazy("enabled"))
    exhausted_until = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("exhausted until")
    )
    disabled_reason = models.CharField(
        max_length=300, blank=True, verbose_name=gettext_lazy("disabled reason")
    )
    last_used = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("last used"))
    created = models.DateTimeField(default=timezone.now, verbose_name=gettext_lazy("created"))

    objects = ProviderKeyQuerySet.as_manager()

    class Meta:
        verbose_name = gettext_lazy("provider key")
        verbose_name_plural = gettext_lazy("provider keys")
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "label"], name="unique_key_label_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} / {self.label} (…{self.hint})"

    def set_key(self, clear: str) -> None:
        clear = clear.strip()
        self.encrypted_key = crypto.encrypt(clear)
        self.hint = clear[-4:] if len(clear) >= 12 else ""

    def get_key(self) -> str:
        return crypto.decrypt(self.encrypted_key)


class RouteQuerySet(models.QuerySet):
    def usable(self):
        """Enabled routes of enabled providers, in failover order."""
        return self.filter(enabled=True, provider__enabled=True).order_by("priority", "id")


class Route(models.Model):
    """ModelSpec → (provider, upstream model); several routes = failover order."""

    model = models.ForeignKey(
        ModelSpec,
        on_delete=models.CASCADE,
        related_name="routes",
        verbose_name=gettext_lazy("model"),
    )
    provider = models.ForeignKey(
        Provider,
        on_delete=models.CASCADE,
        related_name="routes",
        verbose_name=gettext_lazy("provider"),
    )
    upstream_model = models.CharField(max_length=100, verbose_name=gettext_lazy("upstream model"))
    priority = models.PositiveSmallIntegerField(
        default=100,
        help_text=gettext_lazy("Lower is tried first."),
        verbose_name=gettext_lazy("priority"),
    )
    is_free = models.BooleanField(
        default=False,
        help_text=gettext_lazy("Explicitly free: bill nothing."),
        verbose_name=gettext_lazy("is free"),
    )
    allow_fallback_model = models.BooleanField(
        default=False,
        help_text=gettext_lazy(
            "Replicate: when Google's model is at capacity, let Replicate serve the "
            "request with its fallback model (another model; the image page says which made it)."
        ),
        verbose_name=gettext_lazy("allow fallback model"),
    )
    enabled = models.BooleanField(default=True, verbose_name=gettext_lazy("enabled"))
    retired_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=gettext_lazy("When the provider said it no longer knows the model."),
        verbose_name=gettext_lazy("retired at"),
    )
    retired_reason = models.CharField(
        max_length=500, blank=True, verbose_name=gettext_lazy("retired reason")
    )
    free_daily_images = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=gettext_lazy(
            "A provider's free tier: this route makes up to this many images a day per "
            "key (days end at midnight Pacific time, as Google's quotas do) and bills nothing "
            "for them; past that, the next route of the model (its priced fallback) serves. "
            "Empty: no free tier."
        ),
        verbose_name=gettext_lazy("free daily images"),
    )

    objects = RouteQuerySet.as_manager()

    class Meta:
        ordering = ["priority", "id"]
        verbose_name = gettext_lazy("route")
        verbose_name_plural = gettext_lazy("routes")
        constraints = [
            models.UniqueConstraint(
                fields=["model", "provider", "upstream_model"], name="unique_route"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model} → {self.provider} ({self.upstream_model})"

    def price_at(self, when=None, kind: str | None = None) -> Price | None:
        """The interactive price in force at ``when`` (or the ``kind`` asked for)."""
        when = when or timezone.now()
        prices = self.prices.filter(kind=kind or Price.STANDARD, effective_from__lte=when)
        return prices.order_by("-effective_from").first()

    @property
    def has_free_tier(self) -> bool:
        return self.free_daily_images is not None

    @property
    def bills_nothing(self) -> bool:
        """Marked free, or a free tier (which serves only the images it gives away)."""
        return self.is_free or self.has_free_tier

    def is_priced(self, price: Price | None) -> bool:
        """May this route be used with ``price`` (its price in force)? An unpriced route
        is refused unless an admin marked it free (or gave it a free tier)."""
        return price is not None or self.bills_nothing


class Price(models.Model):
    """A versioned price for a route. Rates are micro-USD per million tokens
    (so $30/M = 30_000_000) or micro-USD per image by size.

    Its kind says which calls it prices: ``standard`` (interactive generateContent and
    every other protocol) or ``batch`` (the Gemini Batch API's economy batches, half the
    standard list price at Google: ai.google.dev/gemini-api/docs/pricing)."""

    STANDARD, BATCH = "standard", "batch"
    KINDS = [
        (STANDARD, gettext_lazy("Standard (interactive)")),
        (BATCH, gettext_lazy("Batch API (economy)")),
    ]

    route = models.ForeignKey(
        Route, on_delete=models.CASCADE, related_name="prices", verbose_name=gettext_lazy("route")
    )
    kind = models.CharField(
        max_length=10,
        choices=KINDS,
        default=STANDARD,
        help_text=gettext_lazy(
            "Batch: what an economy batch's image costs through the Gemini Batch API "
            "(Google: half the standard price). A route with a Batch price in force can "
            "serve economy batches."
        ),
        verbose_name=gettext_lazy("kind"),
    )
    effective_from = models.DateTimeField(
        default=timezone.now, verbose_name=gettext_lazy("effective from")
    )
    input_per_mtok = models.PositiveBigIntegerField(
        default=0, verbose_name=gettext_lazy("input per mtok")
    )
    text_output_per_mtok = models.PositiveBigIntegerField(
        default=0,
        help_text=gettext_lazy("Text and thinking output."),
        verbose_name=gettext_lazy("text output per mtok"),
    )
    image_output_per_mtok = models.PositiveBigIntegerField(
        default=0, verbose_name=gettext_lazy("image output per mtok")
    )
    search_query_micros = models.PositiveBigIntegerField(
        default=0,
        help_text=gettext_lazy(
            "Per Google Search query a grounded answer ran, in micro-USD (Gemini 3: "
            "$14 per 1,000 = 14000, after the monthly free allowance)."
        ),
        verbose_name=gettext_lazy("search query micros"),
    )
    per_image = models.JSONField(
        default=dict,
        blank=True,
        help_text=gettext_lazy('Flat micro-USD per image by size, e.g. {"1K": 39000}.'),
        verbose_name=gettext_lazy("per image"),
    )
    note = models.CharField(max_length=200, blank=True, verbose_name=gettext_lazy("note"))

    class Meta:
        ordering = ["route", "-effective_from"]
        verbose_name = gettext_lazy("price")
        verbose_name_plural = gettext_lazy("prices")
        constraints = [
            models.UniqueConstraint(
                fields=["route", "kind", "effective_from"], name="one_price_per_route_kind_and_time"
            )
        ]

    def __str__(self) -> str:
        values = {"route": self.route, "date": f"{self.effective_from:%Y-%m-%d}"}
        if self.kind == self.BATCH:
            return _("%(route)s (Batch API) from %(date)s") % values
        return _("%(route)s from %(date)s") % values
