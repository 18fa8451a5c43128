"""The work: one Generation per image, its references (Uploads), the Batch it may belong
to, each upstream call (Attempt) and the API's idempotency keys."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts.models import Team
from generations.failures import ATTEMPT_OUTCOMES, ErrorKind, explain
from generations.models.upstreams import ModelSpec, Route


class Upload(models.Model):
    """A reference image a user uploaded, validated and re-encoded."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="uploads",
        verbose_name=gettext_lazy("user"),
    )
    file = models.ImageField(
        upload_to="uploads/%Y/%m/",
        width_field="width",
        height_field="height",
        verbose_name=gettext_lazy("file"),
    )
    width = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("width"))
    height = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("height"))
    mime_type = models.CharField(max_length=30, verbose_name=gettext_lazy("MIME type"))
    sha256 = models.CharField(max_length=64, db_index=True, verbose_name=gettext_lazy("sha256"))
    original_name = models.CharField(
        max_length=200, blank=True, verbose_name=gettext_lazy("original name")
    )
    created = models.DateTimeField(default=timezone.now, verbose_name=gettext_lazy("created"))

    class Meta:
        verbose_name = gettext_lazy("upload")
        verbose_name_plural = gettext_lazy("uploads")

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
    cancelled_waiting = models.PositiveIntegerField(
        default=0,
        help_text=gettext_lazy("Images of waiting rows a cancel dropped (counted as cancelled)."),
    )
    stalled = models.CharField(
        max_length=500,
        blank=True,
        help_text=gettext_lazy("Why waiting rows cannot start (another limit)."),
    )
    economy = models.BooleanField(
        default=False,
        help_text=gettext_lazy(
            "Economy: sent through the Gemini Batch API at its Batch price, ready "
            "within 24 hours (generations.economy)."
        ),
    )

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["user", "-created"])]
        verbose_name = gettext_lazy("batch")
        verbose_name_plural = gettext_lazy("batches")

    def __str__(self) -> str:
        return self.name

    @property
    def waiting_images(self) -> int:
        return sum(row.get("count", 1) for row in self.waiting)

    @property
    def expired_rows(self):
        """Economy rows Google let expire: "run the rest now at the normal price"."""
        return self.generations.filter(
            status=Generation.FAILED,
            error_kind=ErrorKind.DEADLINE,
            upstream_batch__state=UpstreamBatch.EXPIRED,
        )


class UpstreamBatch(models.Model):
    """One Gemini Batch API job: the economy rows of one batch that go to one route.

    ``phase`` is nanoweb's side (see generations.economy): ``new`` (not sent yet),
    ``submitting`` (a worker is sending it: ``display_name`` finds it upstream if the
    worker died before it learned ``name``), ``waiting`` (Google has it; polled on
    countdowns), ``applying`` (its results are being stored), ``finished``. ``state`` is
    Google's (``BATCH_STATE_PENDING`` … ``SUCCEEDED`` / ``FAILED`` / ``CANCELLED`` /
    ``EXPIRED``)."""

    NEW, SUBMITTING, WAITING, APPLYING, FINISHED = (
        "new",
        "submitting",
        "waiting",
        "applying",
        "finished",
    )
    PHASES = [(p, p) for p in (NEW, SUBMITTING, WAITING, APPLYING, FINISHED)]
    ACTIVE = (NEW, SUBMITTING, WAITING, APPLYING)
    EXPIRED = "BATCH_STATE_EXPIRED"
    STATE_LABELS = {
        "": gettext_lazy("Not sent yet"),
        "BATCH_STATE_PENDING": gettext_lazy("Pending at Google"),
        "BATCH_STATE_RUNNING": gettext_lazy("Running at Google"),
        "BATCH_STATE_SUCCEEDED": gettext_lazy("Done at Google"),
        "BATCH_STATE_FAILED": gettext_lazy("Failed at Google"),
        "BATCH_STATE_CANCELLED": gettext_lazy("Cancelled"),
        EXPIRED: gettext_lazy("Expired: not done within 48 hours"),
    }

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="upstream_batches")
    route = models.ForeignKey(Route, null=True, on_delete=models.SET_NULL, related_name="+")
    key = models.ForeignKey("ProviderKey", null=True, on_delete=models.SET_NULL, related_name="+")
    price = models.ForeignKey("Price", null=True, on_delete=models.SET_NULL, related_name="+")
    display_name = models.CharField(max_length=128, unique=True)
    name = models.CharField(
        max_length=200, blank=True, help_text=gettext_lazy('Google\'s "batches/…".')
    )
    input_file = models.CharField(
        max_length=200,
        blank=True,
        help_text=gettext_lazy('The JSONL of requests, when sent as a file ("files/…").'),
    )
    phase = models.CharField(max_length=12, choices=PHASES, default=NEW, db_index=True)
    state = models.CharField(max_length=40, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(default=timezone.now)
    submitted = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    polls = models.PositiveIntegerField(default=0)
    poll_errors = models.PositiveSmallIntegerField(default=0)
    tries = models.PositiveSmallIntegerField(
        default=0,
        help_text=gettext_lazy("Submits, or stores of the results, that did not get through."),
    )
    cancel_requested = models.BooleanField(default=False)

    class Meta:
        ordering = ["created"]
        verbose_name = gettext_lazy("upstream batch")
        verbose_name_plural = gettext_lazy("upstream batches")

    def __str__(self) -> str:
        return self.name or self.display_name

    @property
    def is_active(self) -> bool:
        return self.phase in self.ACTIVE

    @property
    def state_label(self) -> str:
        return str(self.STATE_LABELS.get(self.state, self.state.removeprefix("BATCH_STATE_")))

    def waited(self) -> timedelta:
        """How long Google has had it (or had it, once finished)."""
        if self.submitted is None:
            return timedelta(0)
        return (self.finished or timezone.now()) - self.submitted


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
    STATUSES = [
        (QUEUED, gettext_lazy("queued")),
        (RUNNING, gettext_lazy("running")),
        (SUCCEEDED, gettext_lazy("succeeded")),
        (FAILED, gettext_lazy("failed")),
        (CANCELLED, gettext_lazy("cancelled")),
    ]
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="generations",
        verbose_name=gettext_lazy("user"),
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=gettext_lazy("team")
    )
    model = models.ForeignKey(
        ModelSpec,
        on_delete=models.PROTECT,
        related_name="generations",
        verbose_name=gettext_lazy("model"),
    )
    request_id = models.UUIDField(
        db_index=True,
        help_text=gettext_lazy("Shared by the images of one submit."),
        verbose_name=gettext_lazy("request id"),
    )
    prompt = models.TextField(verbose_name=gettext_lazy("prompt"))
    aspect_ratio = models.CharField(max_length=5, verbose_name=gettext_lazy("aspect ratio"))
    image_size = models.CharField(max_length=3, blank=True, verbose_name=gettext_lazy("image size"))
    references = models.ManyToManyField(
        Upload, blank=True, related_name="generations", verbose_name=gettext_lazy("references")
    )
    mask = models.ForeignKey(
        Upload,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="masked_generations",
        help_text=gettext_lazy("Edit mask for the first reference image."),
        verbose_name=gettext_lazy("mask"),
    )
    parent_image = models.ForeignKey(
        "Image",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        verbose_name=gettext_lazy("parent image"),
    )
    batch = models.ForeignKey(
        Batch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="generations",
        verbose_name=gettext_lazy("batch"),
    )

    status = models.CharField(
        max_length=10,
        choices=STATUSES,
        default=QUEUED,
        db_index=True,
        verbose_name=gettext_lazy("status"),
    )
    stage = models.CharField(
        max_length=40,
        blank=True,
        help_text=gettext_lazy("What the job is doing now."),
        verbose_name=gettext_lazy("stage"),
    )
    attempts = models.PositiveSmallIntegerField(default=0, verbose_name=gettext_lazy("attempts"))
    lease_until = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("lease until")
    )
    next_attempt_at = models.DateTimeField(
        default=timezone.now, verbose_name=gettext_lazy("next attempt at")
    )
    enqueued_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("enqueued at")
    )
    deadline = models.DateTimeField(verbose_name=gettext_lazy("deadline"))

    quota_day = models.DateField(verbose_name=gettext_lazy("quota day"))
    reserved_micros = models.BigIntegerField(
        default=0, verbose_name=gettext_lazy("reserved micros")
    )
    actual_micros = models.BigIntegerField(
        null=True, blank=True, verbose_name=gettext_lazy("actual micros")
    )
    usage = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("usage"))
    route = models.ForeignKey(
        Route, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=gettext_lazy("route")
    )
    fingerprint = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text=gettext_lazy("Same model, prompt, parameters and references → same fingerprint."),
        verbose_name=gettext_lazy("fingerprint"),
    )
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text=gettext_lazy("Model parameters asked for: thinking_level, grounding."),
        verbose_name=gettext_lazy("params"),
    )
    grounding = models.JSONField(
        default=dict,
        blank=True,
        help_text=gettext_lazy("The Google searches a grounded answer ran and its sources."),
        verbose_name=gettext_lazy("grounding"),
    )
    booked_slot = models.JSONField(
        null=True,
        blank=True,
        help_text=gettext_lazy("A rate-limit slot booked for the next attempt."),
        verbose_name=gettext_lazy("booked slot"),
    )
    # A queue-style upstream (fal.ai, Replicate) working on this job: its request id and
    # {"id", "urls", "route", "key", "price", "submitted", "polls", ...}. Kept while it is
    # pending, so a crashed or reclaimed job resumes polling instead of paying again.
    upstream_id = models.CharField(
        max_length=200, blank=True, db_index=True, verbose_name=gettext_lazy("upstream id")
    )
    upstream_job = models.JSONField(
        null=True, blank=True, verbose_name=gettext_lazy("upstream job")
    )
    # An economy row: the Gemini Batch API job carrying it (generations.economy). The
    # engine never runs such a row: it waits queued with next_attempt_at at its deadline.
    upstream_batch = models.ForeignKey(
        UpstreamBatch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rows",
        verbose_name=gettext_lazy("upstream batch"),
    )
    served_by = models.CharField(
        max_length=200,
        blank=True,
        help_text=gettext_lazy(
            "The model that made the image when the provider served it with another "
            "(Replicate's capacity fallback)."
        ),
        verbose_name=gettext_lazy("served by"),
    )
    error_kind = models.CharField(
        max_length=20,
        blank=True,
        choices=ErrorKind.choices,
        verbose_name=gettext_lazy("error kind"),
    )
    error_message = models.CharField(
        max_length=500, blank=True, verbose_name=gettext_lazy("error message")
    )
    refunded = models.BooleanField(default=False, verbose_name=gettext_lazy("refunded"))
    upstream_text = models.TextField(blank=True, verbose_name=gettext_lazy("upstream text"))

    created = models.DateTimeField(
        default=timezone.now, db_index=True, verbose_name=gettext_lazy("created")
    )
    started = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("started"))
    finished = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("finished"))
    source = models.CharField(
        max_length=10,
        default="studio",
        help_text=gettext_lazy('"studio", "api" (OpenAI, Gemini or jobs API).'),
        verbose_name=gettext_lazy("source"),
    )

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = gettext_lazy("generation")
        verbose_name_plural = gettext_lazy("generations")
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
    def is_cancellable(self) -> bool:
        """Queued and not being worked on: not started, or waiting at a queue-style
        upstream between polls (its request there is called off too). An economy row is
        cancelled with its batch, which calls off the Batch API job."""
        if self.upstream_batch_id:
            return False
        return self.status == self.QUEUED and (self.started is None or bool(self.upstream_job))

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


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a client sent with a jobs-API request, and the request it
    created: sending the same key again returns the same jobs instead of paying twice."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_id = models.UUIDField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = gettext_lazy("idempotency key")
        verbose_name_plural = gettext_lazy("idempotency keys")
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="unique_idempotency_key_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.key} → {self.request_id}"


class WebhookDelivery(models.Model):
    """A webhook a provider sent and nanoweb believed: kept for a while, so the same
    delivery sent again (a replay) is refused."""

    provider = models.ForeignKey("Provider", on_delete=models.CASCADE, related_name="+")
    delivery_id = models.CharField(max_length=200)
    upstream_id = models.CharField(max_length=200)
    received = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = gettext_lazy("webhook delivery")
        verbose_name_plural = gettext_lazy("webhook deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "delivery_id"], name="unique_webhook_delivery"
            )
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} → {self.upstream_id}"


class Attempt(models.Model):
    """One upstream call, whatever its outcome."""

    generation = models.ForeignKey(
        Generation,
        on_delete=models.CASCADE,
        related_name="attempt_log",
        verbose_name=gettext_lazy("generation"),
    )
    number = models.PositiveSmallIntegerField(verbose_name=gettext_lazy("number"))
    route = models.ForeignKey(
        Route, null=True, on_delete=models.SET_NULL, verbose_name=gettext_lazy("route")
    )
    key_label = models.CharField(max_length=100, blank=True, verbose_name=gettext_lazy("key label"))
    started = models.DateTimeField(default=timezone.now, verbose_name=gettext_lazy("started"))
    latency_ms = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("latency ms"))
    http_status = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name=gettext_lazy("HTTP status")
    )
    outcome = models.CharField(
        max_length=20,
        choices=ATTEMPT_OUTCOMES,
        help_text=gettext_lazy('"ok" or an error class.'),
        verbose_name=gettext_lazy("outcome"),
    )
    detail = models.CharField(max_length=500, blank=True, verbose_name=gettext_lazy("detail"))
    retry_delay = models.FloatField(null=True, blank=True, verbose_name=gettext_lazy("retry delay"))
    may_have_been_billed = models.BooleanField(
        default=False, verbose_name=gettext_lazy("may have been billed")
    )

    class Meta:
        ordering = ["generation", "number"]
        verbose_name = gettext_lazy("attempt")
        verbose_name_plural = gettext_lazy("attempts")

    def __str__(self) -> str:
        return f"#{self.number} {self.outcome}"


class SpooledAnswer(models.Model):
    """An upstream's answer that arrived but could not be stored (a full disk, a database
    error): kept until the job stores it, so the retry stores these bytes instead of
    calling (and perhaps paying) the upstream again. Deleted when the job ends."""

    generation = models.OneToOneField(Generation, on_delete=models.CASCADE, related_name="spool")
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey("ProviderKey", on_delete=models.CASCADE, related_name="+")
    price = models.ForeignKey("Price", null=True, on_delete=models.SET_NULL, related_name="+")
    data = models.BinaryField()
    mime_type = models.CharField(max_length=30)
    # The rest of the answer (usage, text, model version, extra): what settling needs.
    answer = models.JSONField(default=dict)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = gettext_lazy("spooled answer")
        verbose_name_plural = gettext_lazy("spooled answers")

    def __str__(self) -> str:
        return f"{self.generation_id}: {len(self.data)} bytes"


class DuplicateOffer(models.Model):
    """The studio offered the images of an identical request made moments before,
    instead of paying for the same images again (``jobs.recent_duplicates``). It is
    *declined* when the person chose "Generate again"; otherwise it was taken, and saved
    what those images cost. The cost advisor counts both."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    request_id = models.UUIDField(
        help_text=gettext_lazy("The earlier request whose images were offered.")
    )
    fingerprint = models.CharField(max_length=64)
    saved_micros = models.BigIntegerField(default=0)
    declined = models.BooleanField(default=False)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = gettext_lazy("duplicate offer")
        verbose_name_plural = gettext_lazy("duplicate offers")

    def __str__(self) -> str:
        return f"{self.user} {'declined' if self.declined else 'took'} {self.request_id}"
