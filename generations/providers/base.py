"""The provider contract: what an upstream is asked, what it answers, how it fails.

Providers know HTTP, parameters and usage. They never touch the ORM or a
request; the engine gives them an :class:`ImageRequest` and a plain API key and
gets back an :class:`ImageResult` or a :class:`ProviderError` whose ``kind``
decides what happens next (see DESIGN.md, "The upstream path").
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import httpx
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from generations.failures import RETRYABLE, ErrorKind


class ProviderError(Exception):
    """An upstream outcome that is not a usable image, classified once.

    ``message`` is plain language a user may read; ``detail`` is for admins and
    logs (never containing the key). ``may_have_been_billed`` is set when the
    upstream could have charged although nothing usable came back (a timeout
    after the body was sent, a dropped connection, a 200 with no image).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        detail: str = "",
        http_status: int | None = None,
        retry_after: float | None = None,
        may_have_been_billed: bool = False,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail
        self.http_status = http_status
        self.retry_after = retry_after
        self.may_have_been_billed = may_have_been_billed
        self.usage = usage

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __repr__(self) -> str:
        return f"ProviderError({self.kind}, {self.message!r}, http_status={self.http_status})"


@dataclass(frozen=True)
class Reference:
    """A reference image sent along with the prompt (already validated bytes)."""

    data: bytes
    mime_type: str


@dataclass(frozen=True)
class ImageRequest:
    upstream_model: str
    prompt: str
    aspect_ratio: str
    image_size: str | None = None  # "1K" | "2K" | "4K", None when the model takes no size
    references: tuple[Reference, ...] = ()
    mask: Reference | None = None  # a PNG, transparent where the first reference may change
    thinking_level: str | None = None  # "minimal" | "medium" | "high", where the model takes it
    grounding: bool = False  # ground the answer in Google Search
    # Queue-style upstreams: let the upstream serve with its capacity fallback model
    # (Replicate's allow_fallback_model; only where the admin allowed it on the route),
    # and how long the upstream may keep the request before dropping it (Cancel-After).
    allow_fallback: bool = False
    deadline_seconds: float | None = None
    # The same for every submit of this job to this route until an answer says it was
    # not taken (Higgsfield's Idempotency-Key: a retried submit is never paid twice).
    idempotency_key: str = ""


@dataclass(frozen=True)
class Usage:
    """Token counts as the upstream reported them; what pricing bills."""

    input_tokens: int = 0  # all of the prompt: text and reference images
    input_image_tokens: int = 0  # the part of input_tokens that were images
    output_text_tokens: int = 0  # text output, excluding thinking
    output_image_tokens: int = 0
    thinking_tokens: int = 0
    total_tokens: int = 0
    search_queries: int = 0  # Google Search queries a grounded answer ran (billed per query)

    def __post_init__(self) -> None:
        # A relay that reports image input tokens but fewer (or no) input tokens: the
        # prompt was at least its images, so no count is ever negative downstream.
        if self.input_image_tokens > self.input_tokens:
            object.__setattr__(self, "input_tokens", self.input_image_tokens)

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "input_image_tokens": self.input_image_tokens,
            "output_text_tokens": self.output_text_tokens,
            "output_image_tokens": self.output_image_tokens,
            "thinking_tokens": self.thinking_tokens,
            "total_tokens": self.total_tokens,
            "search_queries": self.search_queries,
        }


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    mime_type: str


@dataclass(frozen=True)
class ImageResult:
    images: tuple[GeneratedImage, ...]
    usage: Usage
    text: str = ""
    model_version: str = ""
    response_id: str = ""
    http_status: int = 200
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 120.0

    def as_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.read, connect=self.connect, write=self.read, pool=self.connect)


@dataclass(frozen=True)
class UpstreamJob:
    """A request a queue-style upstream accepted: its id and the URLs it returned for
    status, result and cancel (fal's drop the endpoint's subpath, so they are kept as
    given, never rebuilt). Stored on the job, so a crashed worker resumes polling the
    same request instead of submitting (and paying for) another."""

    id: str
    urls: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"id": self.id, "urls": dict(self.urls)}

    @classmethod
    def of(cls, data: dict) -> UpstreamJob:
        return cls(str(data["id"]), dict(data.get("urls") or {}))


@dataclass(frozen=True)
class Pending:
    """The upstream is still working on ``job``: ask again in ``poll_after`` seconds
    (the upstream's own hint; None lets the engine pace the polls)."""

    job: UpstreamJob
    started: bool = False  # False while queued upstream, True once the model is working
    poll_after: float | None = None
    position: int | None = None  # place in the upstream's queue, where it says


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook delivery: which upstream request it is about."""

    delivery_id: str  # unique per delivery, for refusing replays
    upstream_id: str


class WebhookRejected(Exception):
    """A webhook that must not be believed (bad or missing signature, stale timestamp)."""


class Provider(ABC):
    """One upstream protocol. Instances are cheap; the HTTP client is shared."""

    queued = False  # True for queue-style upstreams (see QueueProvider)

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeouts: Timeouts | None = None,
        client: httpx.Client | None = None,
        options: dict | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeouts = timeouts or Timeouts()
        self.client = client or shared_http_client()
        # The admin's settings for this provider (Provider.options): a Space's argument
        # names, a ComfyUI workflow, … Each kind documents and validates its own.
        self.options = dict(options or {})

    @abstractmethod
    def generate(self, request: ImageRequest) -> ImageResult:
        """Make one image call. Raise :class:`ProviderError` for every non-success."""

    def list_models(self) -> list[str]:
        """The upstream model ids this key can call that make images (all pages), for
        the admin's key check. Raise :class:`ProviderError` when the upstream refuses."""
        raise ProviderError(ErrorKind.PERMANENT, _("This kind of provider cannot list its models."))

    # The admin's note for this kind: where to get a key, what it looks like, and the
    # provider's documented limits (shown on the provider's admin page).
    key_help = ""

    def test_connection(self) -> str:
        """The cheapest call this provider allows that shows whether the key works
        (ideally free: a model list, an account or balance endpoint), as one plain
        sentence for the admin. Raise :class:`ProviderError` when the upstream refuses;
        a kind with no free call says so instead of spending money."""
        found = self.list_models()
        return _("The key works; it can call %(count)s image models.") % {"count": len(found)}


class QueueProvider(Provider):
    """An upstream that takes a job and hands back an id to poll (fal, Replicate).

    The engine never waits on one: it submits, stores the :class:`UpstreamJob`, and
    polls it on Celery countdowns, so a job waiting upstream holds no worker and no
    connection. ``submit`` may answer at once with the finished result (Replicate's
    ``Prefer: wait``)."""

    queued = True

    @abstractmethod
    def submit(
        self, request: ImageRequest, *, webhook_url: str | None = None
    ) -> Pending | ImageResult:
        """Start one request upstream. Raise :class:`ProviderError` when it is refused."""

    @abstractmethod
    def poll(self, job: UpstreamJob) -> Pending | ImageResult:
        """Where ``job`` is: still pending, or done with its images (downloaded now).
        Raise :class:`ProviderError` when it failed."""

    @abstractmethod
    def cancel(self, job: UpstreamJob) -> bool:
        """Ask the upstream to drop ``job``: True when it did so before the model ran
        (nothing billed), False when it was too late. Raise :class:`ProviderError`
        when the upstream cannot be asked."""

    @classmethod
    def verify_webhook(
        cls, headers: dict[str, str], body: bytes, *, secret: str, keys_url: str, now: float
    ) -> WebhookEvent:
        """Check a webhook delivery's signature and timestamp (``headers`` have
        lower-case names). Raise :class:`WebhookRejected` when it does not hold."""
        raise WebhookRejected("this provider sends no webhooks")

    def generate(self, request: ImageRequest) -> ImageResult:
        """Submit and wait in-process (the key check and ad-hoc calls; the engine polls
        on countdowns instead), within the read timeout."""
        deadline = time.monotonic() + self.timeouts.read
        answer = self.submit(request)
        while isinstance(answer, Pending):
            pause = min(max(answer.poll_after or 1.0, 0.2), 5.0)
            if time.monotonic() + pause > deadline:
                with contextlib.suppress(ProviderError):  # the timeout is the answer either way
                    self.cancel(answer.job)
                raise ProviderError(
                    ErrorKind.SLOW,
                    _("The provider took too long to answer."),
                    detail=f"upstream request {answer.job.id} still pending",
                )
            time.sleep(pause)
            answer = self.poll(answer.job)
        return answer


def looks_like_image_model(model_id: str) -> bool:
    """Model lists say nothing of output kinds: image models are known by their names
    (gemini-…-image, gemini-nano-banana-…, gpt-image-…, dall-e-…)."""
    name = model_id.lower()
    return any(mark in name for mark in ("image", "nano-banana", "dall-e"))


PROVIDER_KINDS: dict[str, str] = {
    "gemini": "generations.providers.gemini.GeminiProvider",
    "openai": "generations.providers.openai_images.OpenAIImagesProvider",
    "openai_chat": "generations.providers.openai_chat.OpenAIChatProvider",
    "fal": "generations.providers.fal.FalProvider",
    "replicate": "generations.providers.replicate.ReplicateProvider",
    "leonardo": "generations.providers.leonardo.LeonardoProvider",
    "freepik": "generations.providers.freepik.FreepikProvider",
    "higgsfield": "generations.providers.higgsfield.HiggsfieldProvider",
    "hf_space": "generations.providers.hf_space.HFSpaceProvider",
    "stability": "generations.providers.stability.StabilityProvider",
    "comfyui": "generations.providers.comfyui.ComfyUIProvider",
}


def provider_class(kind: str) -> type[Provider]:
    return import_string(PROVIDER_KINDS[kind])


_client_lock = threading.Lock()
_client: httpx.Client | None = None


def shared_http_client() -> httpx.Client:
    """One connection pool per worker process (timeouts are set per request)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                follow_redirects=False,
                headers={"user-agent": "nanoweb"},
            )
        return _client
