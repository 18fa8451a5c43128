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

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=200, blank=True)
    aspect_ratios = models.JSONField(default=list)
    sizes = models.JSONField(
        default=list,
        blank=True,
        help_text='e.g. ["1K", "2K", "4K"]; empty when the model takes no size.',
    )
    max_reference_images = models.PositiveSmallIntegerField(default=3)
    supports_mask = models.BooleanField(
        default=False,
        help_text="Takes an edit mask (a PNG whose transparent pixels mark what to change). "
        "Only for a model whose every route is an OpenAI Images provider that accepts "
        "masks (gpt-image-*, dall-e-2); masked jobs never fail over to other kinds.",
    )
    max_images_per_request = models.PositiveSmallIntegerField(default=4)
    # Output tokens one image costs at each size ("default" when the model has no size).
    image_tokens = models.JSONField(default=dict)
    # Allowance for text + thinking output per image, used only for the worst-case estimate.
    estimate_text_tokens = models.PositiveIntegerField(default=400)
    thinking_levels = models.JSONField(
        default=list,
        blank=True,
        help_text='Thinking levels it takes, e.g. ["minimal", "medium", "high"]; empty when it '
        "takes none.",
    )
    grounding = models.BooleanField(default=False, help_text="Takes Google Search grounding.")
    status = models.CharField(max_length=10, choices=STATUSES, default=GA)
    shutdown_date = models.DateField(
        null=True,
        blank=True,
        help_text="The provider's announced (earliest) shutdown date; admins are warned 30 "
        "days before.",
    )
    replacement = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="What to use instead once it is deprecated or shut down.",
    )
    notice = models.CharField(
        max_length=200,
        blank=True,
        help_text="Shown beside the model in the studio, e.g. who may still use it.",
    )
    aliases = models.JSONField(
        default=list,
        blank=True,
        help_text="Other names the HTTP API accepts for this model, e.g. a shut-down preview id.",
    )
    is_sandbox = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)
    fallback = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="When none of this model's routes can serve, let this model make the "
        "image instead (only if it supports the request and costs no more than was "
        "reserved). The card says which model made it.",
    )

    objects = ModelSpecQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """The name people see: the sandbox says it is not a real model."""
        return "Sandbox (offline)" if self.is_sandbox else self.name

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
        ("gemini", "Gemini generateContent (Google, or a relay speaking it)"),
        ("openai", "OpenAI Images (generations / edits)"),
        ("openai_chat", "OpenAI chat completions with the image in the message (relays)"),
        ("fal", "fal.ai queue"),
        ("replicate", "Replicate predictions"),
        ("leonardo", "Leonardo.ai generations"),
        ("freepik", "Freepik (Magnific) API tasks"),
        ("higgsfield", "Higgsfield platform API"),
        ("hf_space", "Hugging Face Space (Gradio)"),
        ("stability", "Stability AI Stable Image"),
        ("comfyui", "ComfyUI server (a workflow of yours)"),
    ]
    QUEUED_KINDS = frozenset({"fal", "replicate", "leonardo", "freepik", "higgsfield", "comfyui"})
    WEBHOOK_KINDS = frozenset({"fal", "replicate", "freepik"})

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=KINDS, default="gemini")
    base_url = models.CharField(
        max_length=300,
        validators=[validate_base_url],
        help_text="Google: https://generativelanguage.googleapis.com · OpenAI or a relay: "
        "https://…/v1 · fal.ai: https://queue.fal.run · Replicate: https://api.replicate.com/v1 "
        "· Leonardo: https://cloud.leonardo.ai/api/rest · Freepik: https://api.freepik.com · "
        "Higgsfield: https://platform.higgsfield.ai · Stability: https://api.stability.ai · a "
        "Space: https://owner-name.hf.space · ComfyUI: http://host:8188",
    )
    connect_timeout = models.FloatField(default=10.0)
    read_timeout = models.FloatField(default=120.0)
    rpm = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute per key."
    )
    rpd = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per day per key.")
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Calls in flight per key; for fal.ai and Replicate, requests submitted and "
        "not finished upstream per key.",
    )
    webhooks = models.BooleanField(
        default=False,
        help_text="fal.ai, Replicate and Freepik: ask the provider to call this instance when a "
        "request finishes (NANOWEB_BASE_URL must be reachable from the internet). Polling "
        "stays the fallback.",
    )
    webhook_token = models.CharField(max_length=43, blank=True, editable=False)
    encrypted_webhook_secret = models.TextField(blank=True, editable=False)
    webhook_keys_url = models.CharField(
        max_length=300,
        blank=True,
        validators=[validate_base_url],
        help_text="fal.ai: where its webhook signing keys are published; empty for fal's own "
        "(https://rest.alpha.fal.ai/.well-known/jwks.json).",
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Settings of this kind of provider, e.g. a Hugging Face Space's id and "
        "argument names, a ComfyUI workflow, Higgsfield's field mapping (see the note "
        "for the kind above; the README lists each).",
    )
    is_sandbox = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)

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

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="keys")
    label = models.CharField(max_length=100)
    encrypted_key = models.TextField(editable=False)
    hint = models.CharField(
        max_length=20, editable=False, help_text="Last characters, for recognition."
    )
    enabled = models.BooleanField(default=True)
    exhausted_until = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    objects = ProviderKeyQuerySet.as_manager()

    class Meta:
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

    model = models.ForeignKey(ModelSpec, on_delete=models.CASCADE, related_name="routes")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="routes")
    upstream_model = models.CharField(max_length=100)
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower is tried first.")
    is_free = models.BooleanField(default=False, help_text="Explicitly free: bill nothing.")
    allow_fallback_model = models.BooleanField(
        default=False,
        help_text="Replicate: when Google's model is at capacity, let Replicate serve the "
        "request with its fallback model (another model; the image page says which made it).",
    )
    enabled = models.BooleanField(default=True)
    retired_at = models.DateTimeField(
        null=True, blank=True, help_text="When the provider said it no longer knows the model."
    )
    retired_reason = models.CharField(max_length=500, blank=True)
    free_daily_images = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="A provider's free tier: this route makes up to this many images a day per "
        "key (days end at midnight Pacific time, as Google's quotas do) and bills nothing "
        "for them; past that, the next route of the model (its priced fallback) serves. "
        "Empty: no free tier.",
    )

    objects = RouteQuerySet.as_manager()

    class Meta:
        ordering = ["priority", "id"]
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

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="prices")
    kind = models.CharField(
        max_length=10,
        choices=KINDS,
        default=STANDARD,
        help_text="Batch: what an economy batch's image costs through the Gemini Batch API "
        "(Google: 50 % of the standard price). A route with a Batch price in force can "
        "serve economy batches.",
    )
    effective_from = models.DateTimeField(default=timezone.now)
    input_per_mtok = models.PositiveBigIntegerField(default=0)
    text_output_per_mtok = models.PositiveBigIntegerField(
        default=0, help_text="Text and thinking output."
    )
    image_output_per_mtok = models.PositiveBigIntegerField(default=0)
    search_query_micros = models.PositiveBigIntegerField(
        default=0,
        help_text="Per Google Search query a grounded answer ran, in micro-USD (Gemini 3: "
        "$14 per 1,000 = 14000, after the monthly free allowance).",
    )
    per_image = models.JSONField(
        default=dict, blank=True, help_text='Flat micro-USD per image by size, e.g. {"1K": 39000}.'
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["route", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["route", "kind", "effective_from"], name="one_price_per_route_kind_and_time"
            )
        ]

    def __str__(self) -> str:
        batch = " (Batch API)" if self.kind == self.BATCH else ""
        return f"{self.route}{batch} from {self.effective_from:%Y-%m-%d}"
