"""What is made and how: the model catalog, upstream providers and their keys,
routes with versioned prices, and the jobs (one Generation per image)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Team
from generations import crypto
from generations.failures import ATTEMPT_OUTCOMES, ErrorKind, explain

ASPECT_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]


class ModelSpecQuerySet(models.QuerySet):
    def available(self):
        """Models people can pick: enabled, with at least one usable route."""
        return self.filter(
            enabled=True, routes__enabled=True, routes__provider__enabled=True
        ).distinct()


class ModelSpec(models.Model):
    """What people pick in the studio, with what it can do."""

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

    def image_tokens_for(self, size: str | None) -> int:
        return int(self.image_tokens.get(size or "default") or self.image_tokens.get("default", 0))

    def default_size(self) -> str | None:
        return self.sizes[0] if self.sizes else None


class Provider(models.Model):
    """An upstream endpoint (official API, a relay, or the sandbox)."""

    KINDS = [
        ("gemini", "Gemini generateContent"),
        ("openai", "OpenAI Images (generations / edits)"),
    ]

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=KINDS, default="gemini")
    base_url = models.URLField()
    connect_timeout = models.FloatField(default=10.0)
    read_timeout = models.FloatField(default=120.0)
    rpm = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute per key."
    )
    rpd = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per day per key.")
    max_concurrency = models.PositiveIntegerField(null=True, blank=True)
    is_sandbox = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


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
    enabled = models.BooleanField(default=True)

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

    def price_at(self, when=None) -> Price | None:
        when = when or timezone.now()
        return self.prices.filter(effective_from__lte=when).order_by("-effective_from").first()

    def is_priced(self, price: Price | None) -> bool:
        """May this route be used with ``price`` (its price in force)? An unpriced route
        is refused unless an admin marked it free."""
        return price is not None or self.is_free


class Price(models.Model):
    """A versioned price for a route. Rates are micro-USD per million tokens
    (so $30/M = 30_000_000) or micro-USD per image by size."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="prices")
    effective_from = models.DateTimeField(default=timezone.now)
    input_per_mtok = models.PositiveBigIntegerField(default=0)
    text_output_per_mtok = models.PositiveBigIntegerField(
        default=0, help_text="Text and thinking output."
    )
    image_output_per_mtok = models.PositiveBigIntegerField(default=0)
    per_image = models.JSONField(
        default=dict, blank=True, help_text='Flat micro-USD per image by size, e.g. {"1K": 39000}.'
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["route", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["route", "effective_from"], name="one_price_per_route_and_time"
            )
        ]

    def __str__(self) -> str:
        return f"{self.route} from {self.effective_from:%Y-%m-%d}"


class Upload(models.Model):
    """A reference image a user uploaded, validated and re-encoded."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads"
    )
    file = models.ImageField(upload_to="uploads/%Y/%m/", width_field="width", height_field="height")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    mime_type = models.CharField(max_length=30)
    sha256 = models.CharField(max_length=64, db_index=True)
    original_name = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.original_name or str(self.pk)


class Batch(models.Model):
    """Many prompts started at once; its progress is counted from its generations."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batches"
    )
    name = models.CharField(max_length=200)
    created = models.DateTimeField(default=timezone.now)
    # Rows not started yet because the person's jobs-in-progress limit was full: each
    # {"model", "prompt", "aspect_ratio", "image_size", "count"}; nothing is reserved
    # for them until they start, as room frees up.
    waiting = models.JSONField(default=list, blank=True)
    stalled = models.CharField(
        max_length=500, blank=True, help_text="Why waiting rows cannot start (another limit)."
    )

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["user", "-created"])]

    def __str__(self) -> str:
        return self.name

    @property
    def waiting_images(self) -> int:
        return sum(row.get("count", 1) for row in self.waiting)


class GenerationQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(user=user)

    def in_flight(self):
        return self.filter(status__in=[Generation.QUEUED, Generation.RUNNING])


class Generation(models.Model):
    """One image job: its request, its state machine, its money."""

    QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    )
    STATUSES = [(s, s) for s in (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)]
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    model = models.ForeignKey(ModelSpec, on_delete=models.PROTECT, related_name="generations")
    request_id = models.UUIDField(db_index=True, help_text="Shared by the images of one submit.")
    prompt = models.TextField()
    aspect_ratio = models.CharField(max_length=5)
    image_size = models.CharField(max_length=3, blank=True)
    references = models.ManyToManyField(Upload, blank=True, related_name="generations")
    mask = models.ForeignKey(
        Upload,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="masked_generations",
        help_text="Edit mask for the first reference image.",
    )
    parent_image = models.ForeignKey(
        "Image", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="generations"
    )

    status = models.CharField(max_length=10, choices=STATUSES, default=QUEUED, db_index=True)
    stage = models.CharField(max_length=40, blank=True, help_text="What the job is doing now.")
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField()

    quota_day = models.DateField()
    reserved_micros = models.BigIntegerField(default=0)
    actual_micros = models.BigIntegerField(null=True, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    route = models.ForeignKey(Route, null=True, blank=True, on_delete=models.SET_NULL)
    fingerprint = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="Same model, prompt, parameters and references → same fingerprint.",
    )
    booked_slot = models.JSONField(
        null=True, blank=True, help_text="A rate-limit slot booked for the next attempt."
    )
    error_kind = models.CharField(max_length=20, blank=True, choices=ErrorKind.choices)
    error_message = models.CharField(max_length=500, blank=True)
    refunded = models.BooleanField(default=False)
    upstream_text = models.TextField(blank=True)

    created = models.DateTimeField(default=timezone.now, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    source = models.CharField(
        max_length=10, default="studio", help_text='"studio", "api" (OpenAI, Gemini or jobs API).'
    )

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["user", "-created"]),
            models.Index(fields=["status", "next_attempt_at"]),
            # "Generating (N)" on every page: a person's jobs in flight, however many
            # images they have made.
            models.Index(
                fields=["user"],
                name="generation_in_flight_idx",
                condition=models.Q(status__in=["queued", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} · {self.prompt[:40]}"

    def ordered_references(self) -> list[Upload]:
        """The reference images in the order they were attached (a mask edits the first)."""
        through = Generation.references.through.objects.filter(generation=self)
        return [row.upload for row in through.select_related("upload").order_by("pk")]

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def stage_label(self) -> str:
        if self.status == self.QUEUED and self.stage in ("", "queued"):
            return "Queued"
        return (self.stage or self.status).capitalize()

    @property
    def failure(self):
        """Title and plain-language reason of why this job made no image."""
        return explain(ErrorKind.CANCELLED if self.status == self.CANCELLED else self.error_kind)

    @property
    def failure_title(self) -> str:
        return str(self.failure.title)

    def elapsed(self) -> timedelta:
        return (self.finished or timezone.now()) - (self.started or self.created)


class ImageQuerySet(models.QuerySet):
    def live(self):
        """Not deleted (a deleted image waits out the undo window, then is purged)."""
        return self.filter(deleted_at__isnull=True)

    def owned_by(self, user):
        return self.live().filter(user=user)

    def visible_to(self, user):
        """The person's own images and what their teammates shared with the team."""
        mine = Q(user=user)
        if user.team_id:
            mine |= Q(shared_with_team=True, user__team_id=user.team_id)
        return self.live().filter(mine)


class Image(models.Model):
    """A generated image: the file is private and served only to its owner (and, once
    shared, to the owner's team)."""

    generation = models.OneToOneField(Generation, on_delete=models.CASCADE, related_name="image")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="images"
    )
    file = models.ImageField(upload_to="images/%Y/%m/", width_field="width", height_field="height")
    thumbnail = models.ImageField(upload_to="thumbs/%Y/%m/")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    mime_type = models.CharField(max_length=30)
    bytes = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True)
    starred = models.BooleanField(default=False)
    shared_with_team = models.BooleanField(default=False)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="Deleted; the file is purged after the undo window."
    )

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [
            # The gallery's keyset pagination: newest first, ties broken by id.
            models.Index(fields=["user", "-created", "-id"], name="image_gallery_idx"),
            models.Index(fields=["shared_with_team", "-created", "-id"], name="image_shared_idx"),
            # Only deleted rows: the purge task finds them; galleries never scan it.
            models.Index(
                fields=["deleted_at"],
                name="image_deleted_idx",
                condition=Q(deleted_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.width}×{self.height} {self.mime_type}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def can_change(self, user) -> bool:
        """Only the owner stars, shares or deletes; teammates may view and remix."""
        return self.user_id == user.pk


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a client sent with a jobs-API request, and the request it
    created: sending the same key again returns the same jobs instead of paying twice."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_id = models.UUIDField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="unique_idempotency_key_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.key} → {self.request_id}"


class Attempt(models.Model):
    """One upstream call, whatever its outcome."""

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    route = models.ForeignKey(Route, null=True, on_delete=models.SET_NULL)
    key_label = models.CharField(max_length=100, blank=True)
    started = models.DateTimeField(default=timezone.now)
    latency_ms = models.PositiveIntegerField(default=0)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(
        max_length=20, choices=ATTEMPT_OUTCOMES, help_text='"ok" or an error class.'
    )
    detail = models.CharField(max_length=500, blank=True)
    retry_delay = models.FloatField(null=True, blank=True)
    may_have_been_billed = models.BooleanField(default=False)

    class Meta:
        ordering = ["generation", "number"]

    def __str__(self) -> str:
        return f"#{self.number} {self.outcome}"


# --- Shared resilience state (the database store; Redis keeps the same in production) ---


class KeyPermit(models.Model):
    """One call a key was allowed to make: the rate limiter's sliding window,
    its per-day count and, until released or expired, its concurrency slot."""

    key = models.ForeignKey(ProviderKey, on_delete=models.CASCADE, related_name="permits")
    token = models.CharField(max_length=32, unique=True)
    granted_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(help_text="When a slot nobody released frees itself.")
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["key", "granted_at"])]

    def __str__(self) -> str:
        return f"{self.key_id}@{self.granted_at:%H:%M:%S}"


class RouteCircuit(models.Model):
    """A route's circuit breaker (the database store)."""

    route = models.OneToOneField(Route, on_delete=models.CASCADE, related_name="circuit")
    state = models.JSONField(default=dict)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.route_id}: {self.state.get('state', 'closed')}"
