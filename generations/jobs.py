"""Submit: validate → estimate → reserve → create → enqueue on commit."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from accounts import limits, quotas
from accounts.periods import quota_day
from generations import pricing, queue, routing
from generations.failures import ErrorKind
from generations.images import CleanImage, ImageRejected, clean_image, clean_mask
from generations.models import DuplicateOffer, Generation, Image, ModelSpec, Route, Upload

log = logging.getLogger(__name__)


class SubmitError(Exception):
    """Bad input or a refused admission. ``field`` names the form field to blame;
    ``limit`` says which quota refused it (``quotas.QuotaExceeded``'s constants), or is
    None for a request that is wrong in itself."""

    def __init__(self, message: str, *, field: str | None = None, limit: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.limit = limit


class StorageUnavailable(SubmitError):
    """The reference images could not be stored (disk full, no permission): nothing was
    kept, made or reserved, and the same request may simply be sent again later."""

    def __init__(self) -> None:
        super().__init__(
            _(
                "Your reference images could not be saved: this server's storage is "
                "unavailable (it may be full). Nothing was charged; try again in a few "
                "minutes, and tell your admin if it keeps happening."
            )
        )


@dataclass
class JobRequest:
    model: ModelSpec
    prompt: str
    aspect_ratio: str
    image_size: str | None = None
    count: int = 1
    references: list[CleanImage] = field(default_factory=list)
    reference_names: list[str] = field(default_factory=list)
    mask: CleanImage | None = None  # transparent where the first reference may change
    parent_image: Image | None = None
    source: str = "studio"  # or "api"
    thinking_level: str | None = None  # one of the model's thinking_levels
    grounding: bool = False  # ground the answer in Google Search, where the model takes it

    @property
    def params(self) -> dict:
        """The model parameters asked for, as the job stores them (none: empty)."""
        params: dict = {}
        if self.thinking_level:
            params["thinking_level"] = self.thinking_level
        if self.grounding:
            params["grounding"] = True
        return params


def text_problem(text: str) -> str:
    """Why ``text`` cannot be a prompt ("" when it can): a NUL character (PostgreSQL
    text cannot hold one) or a lone surrogate (not Unicode text at all, so it can be
    neither stored nor sent upstream)."""
    if "\x00" in text:
        return _("The prompt contains a NUL character (\\x00); remove it.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return _(
            "The prompt contains a character that is not valid Unicode (%(char)s at "
            "position %(position)s), such as half of an emoji; remove it."
        ) % {"char": ascii(text[exc.start])[1:-1], "position": exc.start + 1}
    return ""


def validate(req: JobRequest) -> None:
    """Refuse what the model cannot do, clearly; never silently downgrade."""
    found = problems(req)
    if found:
        raise found[0]


def problems(req: JobRequest) -> list[SubmitError]:
    """Everything wrong with ``req`` for its model, one refusal per field, in the order
    the form shows the fields (a batch row reports all of them at once)."""
    model = req.model
    prompt = req.prompt.strip()
    found = []
    if not prompt:
        found.append(
            SubmitError(_("Write a prompt describing the image you want."), field="prompt")
        )
    elif problem := text_problem(prompt):
        found.append(SubmitError(problem, field="prompt"))
    elif len(prompt) > settings.NANOWEB_MAX_PROMPT_CHARS:
        found.append(
            SubmitError(
                _("The prompt is %(length)s characters long; the limit is %(limit)s.")
                % {
                    "length": f"{len(prompt):,}",
                    "limit": f"{settings.NANOWEB_MAX_PROMPT_CHARS:,}",
                },
                field="prompt",
            )
        )
    if req.aspect_ratio not in model.aspect_ratios:
        found.append(
            SubmitError(
                _("%(model)s does not support the aspect ratio %(ratio)s.")
                % {"model": model.name, "ratio": req.aspect_ratio},
                field="aspect_ratio",
            )
        )
    if model.sizes and req.image_size not in model.sizes:
        found.append(
            SubmitError(
                _("%(model)s supports the sizes %(sizes)s.")
                % {"model": model.name, "sizes": ", ".join(model.sizes)},
                field="image_size",
            )
        )
    if not model.sizes and req.image_size:
        found.append(
            SubmitError(
                _("%(model)s has one fixed size; it does not take %(size)s.")
                % {"model": model.name, "size": req.image_size},
                field="image_size",
            )
        )
    if not 1 <= req.count <= model.max_images_per_request:
        found.append(
            SubmitError(
                _("%(model)s makes 1 to %(most)s images per request.")
                % {"model": model.name, "most": model.max_images_per_request},
                field="count",
            )
        )
    if len(req.references) > model.max_reference_images:
        found.append(
            SubmitError(too_many_references(model, len(req.references)), field="references")
        )
    for check in ((_validate_mask,) if req.mask is not None else ()) + (_validate_params,):
        try:
            check(req)
        except SubmitError as exc:
            found.append(exc)
    return found


def _validate_params(req: JobRequest) -> None:
    """Thinking levels and Search grounding only where the model takes them: refused with a
    message, never dropped."""
    model = req.model
    if req.thinking_level and req.thinking_level not in model.thinking_levels:
        if model.thinking_levels:
            message = _("%(model)s takes the thinking levels %(levels)s, not %(level)s.") % {
                "model": model.name,
                "levels": ", ".join(model.thinking_levels),
                "level": req.thinking_level,
            }
        else:
            message = _("%(model)s takes no thinking level.") % {"model": model.name}
        raise SubmitError(message, field="thinking_level")
    if req.grounding and not model.grounding:
        raise SubmitError(
            _("%(model)s cannot ground its images in Google Search.") % {"model": model.name},
            field="grounding",
        )


def no_mask(model: ModelSpec) -> str:
    return _(
        "%(model)s edits from the prompt and reference images and takes no mask; "
        "describe the change in the prompt instead."
    ) % {"model": model.name}


def _validate_mask(req: JobRequest) -> None:
    if not req.model.supports_mask:
        raise SubmitError(no_mask(req.model), field="mask")
    if not req.references:
        raise SubmitError(_("A mask needs the image it applies to."), field="mask")
    first, mask = req.references[0], req.mask
    if (mask.width, mask.height) != (first.width, first.height):
        raise SubmitError(
            _(
                "The mask is %(width)s×%(height)s pixels; it must be the size of the first "
                "image (%(first_width)s×%(first_height)s)."
            )
            % {
                "width": mask.width,
                "height": mask.height,
                "first_width": first.width,
                "first_height": first.height,
            },
            field="mask",
        )


def validate_for(user, req: JobRequest, mine: limits.EffectiveLimits | None = None) -> None:
    """Refuse what this person may not do (their own or their team's limits; ``mine``
    when the caller has read them already)."""
    mine = mine or limits.for_user(user)
    own = mine.source == "own"
    values = {
        "model": req.model.name,
        "team": mine.team,
        "size": mine.max_size,
        "count": mine.max_per_request,
        "attached": len(req.references),
    }
    if not mine.allows_model(req.model):
        message = (
            _("%(model)s is not among the models your limits allow.")
            if own
            else _("%(model)s is not among the models team %(team)s's limits allow.")
        )
        raise SubmitError(message % values, field="model")
    if not mine.allows_size(req.image_size):
        message = (
            _("The largest size your limits allow is %(size)s.")
            if own
            else _("The largest size team %(team)s's limits allow is %(size)s.")
        )
        raise SubmitError(message % values, field="image_size")
    if mine.max_per_request is not None and req.count > mine.max_per_request:
        if own:
            message = ngettext(
                "Your limits allow %(count)s image per request.",
                "Your limits allow %(count)s images per request.",
                mine.max_per_request,
            )
        else:
            message = ngettext(
                "Team %(team)s's limits allow %(count)s image per request.",
                "Team %(team)s's limits allow %(count)s images per request.",
                mine.max_per_request,
            )
        raise SubmitError(message % values, field="count")
    if mine.max_references is not None and len(req.references) > mine.max_references:
        values["count"] = mine.max_references
        if own:
            message = ngettext(
                "Your limits allow %(count)s reference image; you attached %(attached)s.",
                "Your limits allow %(count)s reference images; you attached %(attached)s.",
                mine.max_references,
            )
        else:
            message = ngettext(
                "Team %(team)s's limits allow %(count)s reference image; you attached "
                "%(attached)s.",
                "Team %(team)s's limits allow %(count)s reference images; you attached "
                "%(attached)s.",
                mine.max_references,
            )
        raise SubmitError(message % values, field="references")


def fingerprint(req: JobRequest) -> str:
    """What makes two requests the same: model, prompt, parameters, reference images."""
    parts = [
        req.model.slug,
        " ".join(req.prompt.split()),
        req.aspect_ratio,
        req.image_size or "",
        *sorted(r.sha256 for r in req.references),
    ]
    if req.mask:
        parts.append(f"mask:{req.mask.sha256}")
    parts += [f"{k}:{v}" for k, v in sorted(req.params.items())]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def recent_duplicates(user, req: JobRequest) -> list[Generation]:
    """The images of this person's latest identical request within the duplicate window
    (settings.NANOWEB_DUPLICATE_WINDOW_SECONDS; 0 turns the guard off)."""
    window = settings.NANOWEB_DUPLICATE_WINDOW_SECONDS
    if not window:
        return []
    latest = (
        Generation.objects.for_user(user)
        .filter(
            fingerprint=fingerprint(req),
            status=Generation.SUCCEEDED,
            created__gte=timezone.now() - timedelta(seconds=window),
        )
        .order_by("-created")
        .first()
    )
    if latest is None:
        return []
    return list(
        Generation.objects.filter(
            request_id=latest.request_id, status=Generation.SUCCEEDED
        ).select_related("image")
    )


def offer_earlier(user, req: JobRequest, earlier: list[Generation]) -> None:
    """Record that the studio offered ``earlier`` instead of a new, paid request (the
    cost advisor counts what taking the offer saved)."""
    DuplicateOffer.objects.create(
        user=user,
        team=user.team,
        request_id=earlier[0].request_id,
        fingerprint=fingerprint(req),
        saved_micros=sum(g.actual_micros or 0 for g in earlier),
    )


def decline_offer(user, req: JobRequest) -> None:
    """The person chose "Generate again": their latest offer for this request was not
    taken."""
    window = timedelta(seconds=settings.NANOWEB_DUPLICATE_WINDOW_SECONDS or 0)
    latest = (
        DuplicateOffer.objects.filter(
            user=user, fingerprint=fingerprint(req), created__gte=timezone.now() - window
        )
        .order_by("-created")
        .values_list("pk", flat=True)[:1]
    )
    DuplicateOffer.objects.filter(pk__in=list(latest)).update(declined=True)


def too_many_references(model: ModelSpec, attached: int) -> str:
    return ngettext(
        "%(model)s accepts at most %(most)s reference image; you attached %(attached)s.",
        "%(model)s accepts at most %(most)s reference images; you attached %(attached)s.",
        model.max_reference_images,
    ) % {"model": model.name, "most": model.max_reference_images, "attached": attached}


def estimate_per_image(
    model: ModelSpec,
    *,
    image_size: str | None,
    prompt_chars: int,
    references: int,
    grounding: bool = False,
    economy: bool = False,
) -> int:
    """Worst case over the model's routes, so any route that serves is covered. A grounded
    image allows for ``NANOWEB_GROUNDING_ESTIMATE_QUERIES`` searches. ``economy``: over
    the routes that serve economy batches, at their Batch price."""
    worst = None
    usage = pricing.worst_case_usage(
        prompt_chars=prompt_chars,
        references=references,
        image_tokens=model.image_tokens_for(image_size),
        text_tokens=model.estimate_text_tokens,
        grounded=grounding,
    )
    routes = routing.batch_routes(model) if economy else Route.objects.usable().filter(model=model)
    for route in routes:
        price = pricing.batch_price(route) if economy else route.price_at()
        if not route.is_priced(price):
            continue  # an unpriced route is never used, so it cannot cost anything
        cost = pricing.route_cost(route, price, usage, image_size)
        worst = cost if worst is None else max(worst, cost)
    if worst is None and economy:
        raise SubmitError(
            _("%(model)s has no Gemini Batch API route with a Batch price.")
            % {"model": model.name},
            field="model",
        )
    if worst is None:
        raise SubmitError(
            _(
                "%(model)s has no priced provider route; ask an admin to set a price or mark "
                "the route free."
            )
            % {"model": model.name},
            field="model",
        )
    return worst


def estimate_request(req: JobRequest, *, economy: bool = False) -> int:
    """:func:`estimate_per_image` for what ``req`` asks (as an economy row: ``economy``)."""
    return estimate_per_image(
        req.model,
        image_size=req.image_size,
        prompt_chars=len(req.prompt),
        references=len(req.references),
        grounding=req.grounding,
        economy=economy,
    )


ECONOMY_STAGE = "waiting for the economy batch"


def submit(
    user,
    req: JobRequest,
    mine: limits.EffectiveLimits | None = None,
    *,
    economy: bool = False,
    run_here: bool = False,
) -> list[Generation]:
    """Admit and enqueue ``req.count`` image jobs, or raise SubmitError having changed nothing.
    ``mine``: the person's limits, when the caller has read them already.

    ``economy``: rows of an economy batch, reserved at the Batch price and not enqueued
    (generations.economy sends them in one Batch API job). They wait queued with their
    next attempt at their deadline, which is the Batch API's: the engine never runs them.

    ``run_here``: the caller runs the first attempts itself (the synchronous API's fast
    path) and nothing is sent to the workers; a job the caller never claims is sent by
    the sweep once ``NANOWEB_REQUEUE_AFTER_SECONDS`` have passed (``enqueued_at``)."""
    mine = mine or limits.for_user(user)
    validate(req)
    validate_for(user, req, mine)
    per_image = estimate_request(req, economy=economy)
    wait = settings.NANOWEB_ECONOMY_DEADLINE_SECONDS if economy else None
    print_ = fingerprint(req)
    names = [
        req.reference_names[i] if i < len(req.reference_names) else f"reference-{i + 1}"
        for i in range(len(req.references))
    ]
    # Outside the transaction; all or none (StorageUnavailable leaves nothing behind).
    stored = _store_uploads(user, [*req.references, req.mask], [*names, "mask"])
    uploads, mask = stored[: len(req.references)], stored[len(req.references)]
    now = timezone.now()
    request_id = uuid.uuid4()
    deadline = now + timedelta(seconds=wait or settings.NANOWEB_JOB_DEADLINE_SECONDS)
    try:
        with transaction.atomic():
            jobs = [
                Generation.objects.create(
                    user=user,
                    team=user.team,
                    model=req.model,
                    request_id=request_id,
                    prompt=req.prompt.strip(),
                    aspect_ratio=req.aspect_ratio,
                    image_size=req.image_size or "",
                    parent_image=req.parent_image,
                    mask=mask,
                    fingerprint=print_,
                    params=req.params,
                    quota_day=quota_day(now),
                    reserved_micros=per_image,
                    stage=ECONOMY_STAGE if economy else "queued",
                    enqueued_at=now,
                    next_attempt_at=deadline if economy else now,
                    source=req.source,
                    created=now + timedelta(microseconds=i),
                    deadline=deadline,
                )
                for i in range(req.count)
            ]
            quotas.reserve(user, jobs, per_image, mine)
            for job in jobs:
                for upload in uploads:  # one by one: their order is kept (see ordered_references)
                    job.references.add(upload)
            if not economy and not run_here:
                transaction.on_commit(lambda: queue.enqueue([j.pk for j in jobs]))
    except quotas.QuotaExceeded as exc:
        _discard_new_uploads([*uploads, mask] if mask else uploads)
        raise SubmitError(exc.message, limit=exc.limit) from exc
    return jobs


def cancel(user, request_id) -> list[Generation]:
    """Cancel the jobs of one request that no worker is running, returning their money.

    A job is cancellable until a worker calls the upstream for it; a job waiting at a
    queue-style upstream (fal.ai, Replicate) between polls is too, and its upstream
    request is called off as well (the attempt log says whether the provider had
    already started it and may bill it). A job a worker has claimed keeps running;
    the conditional update makes cancel and claim race safely.
    """
    return _cancel(user, request_id=request_id)


def cancel_job(user, pk) -> Generation | None:
    """Cancel one job (a studio card's Cancel); None when it can no longer be."""
    cancelled = _cancel(user, pk=pk)
    return cancelled[0] if cancelled else None


CANCELLABLE = Q(started__isnull=True) | Q(upstream_job__isnull=False)


def _cancel(user, **which) -> list[Generation]:
    cancelled = []
    for gen in Generation.objects.filter(CANCELLABLE, user=user, status=Generation.QUEUED, **which):
        with transaction.atomic():
            won = Generation.objects.filter(
                CANCELLABLE, pk=gen.pk, status=Generation.QUEUED, attempts=gen.attempts
            ).update(
                status=Generation.CANCELLED,
                stage="",
                finished=timezone.now(),
                actual_micros=0,
                refunded=True,
                error_kind=ErrorKind.CANCELLED,
                # Stored, and also read by the API: English here, translated where shown.
                error_message=gettext_noop("Cancelled before it was made."),
            )
            if won:
                quotas.release(gen, reason=gettext_noop("cancelled before it was made"))
                cancelled.append(gen)
    upstream = [gen.pk for gen in cancelled if gen.upstream_job]
    if upstream:
        transaction.on_commit(lambda: queue.cancel_upstream(upstream))
    return cancelled


def _store_uploads(user, images: list[CleanImage | None], names: list[str]) -> list[Upload | None]:
    """An Upload for each image (None stays None), reusing the person's identical ones;
    :class:`StorageUnavailable` when one cannot be written, with the new ones removed."""
    uploads: list[Upload | None] = []
    try:
        for clean, name in zip(images, names, strict=True):
            uploads.append(None if clean is None else _store_upload(user, clean, name))
    except OSError as exc:
        log.exception("A reference image could not be stored: %s", exc)
        _discard_new_uploads([u for u in uploads if u is not None])
        raise StorageUnavailable() from exc
    return uploads


def _store_upload(user, clean: CleanImage, name: str) -> Upload:
    existing = Upload.objects.filter(user=user, sha256=clean.sha256).first()
    if existing:
        return existing
    upload = Upload(
        user=user, mime_type=clean.mime_type, sha256=clean.sha256, original_name=name[:200]
    )
    # A name no other file has, so a failed write's partial file is ours to delete.
    filename = f"{clean.sha256[:16]}-{secrets.token_hex(4)}.{clean.extension}"
    full_name = upload.file.field.generate_filename(upload, filename)
    try:
        upload.file.save(filename, ContentFile(clean.data), save=False)
    except OSError:
        if upload.file.storage.exists(full_name):
            upload.file.storage.delete(full_name)
        raise
    upload.width, upload.height = clean.width, clean.height
    upload.save()
    upload._new = True
    return upload


def _discard_new_uploads(uploads: list[Upload]) -> None:
    for upload in uploads:
        if getattr(upload, "_new", False):
            upload.file.delete(save=False)
            upload.delete()


def request_like(gen: Generation) -> JobRequest:
    """One more image with the same settings (and reference images) as ``gen``."""

    def reread(upload: Upload, clean=clean_image, mask=False) -> CleanImage:
        try:
            with upload.file.open("rb") as handle:
                return clean(handle.read(), name=upload.original_name)
        except (OSError, ValueError, ImageRejected) as exc:  # ValueError: no file at all
            name = upload.original_name
            if mask:
                message = (
                    _("The edit mask %(name)s is no longer available.")
                    if name
                    else _("The edit mask is no longer available.")
                )
            else:
                message = (
                    _("The reference image %(name)s is no longer available.")
                    if name
                    else _("The reference image is no longer available.")
                )
            raise SubmitError(message % {"name": name}) from exc

    uploads = gen.ordered_references()
    return JobRequest(
        model=gen.model,
        prompt=gen.prompt,
        aspect_ratio=gen.aspect_ratio,
        image_size=gen.image_size or None,
        count=1,
        references=[reread(u) for u in uploads],
        reference_names=[u.original_name for u in uploads],
        mask=reread(gen.mask, clean_mask, mask=True) if gen.mask_id else None,
        parent_image=gen.parent_image,
        thinking_level=(gen.params or {}).get("thinking_level"),
        grounding=bool((gen.params or {}).get("grounding")),
    )


def retry(
    user, failed: list[Generation], requests: list[JobRequest] | None = None
) -> list[Generation]:
    """Start every job in ``failed`` again as a new job, charged like any other; all or
    none (a refusal changes nothing). A batch item moves to its new job, so the batch
    counts what it has now, not each earlier try. ``requests`` are the jobs'
    :func:`request_like`, when the caller has built them already."""
    if any(gen.status not in (Generation.FAILED, Generation.CANCELLED) for gen in failed):
        raise SubmitError(_("Only a job that made no image can be retried."))
    requests = requests or [request_like(gen) for gen in failed]
    new = []
    with transaction.atomic():
        for gen, request in zip(failed, requests, strict=True):
            job = submit(user, request)[0]
            if gen.batch_id:
                Generation.objects.filter(pk=job.pk).update(batch_id=gen.batch_id)
                Generation.objects.filter(pk=gen.pk).update(batch=None)
                job.batch_id = gen.batch_id
            new.append(job)
    return new
