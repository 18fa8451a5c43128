"""Batches: many prompts at once, from lines of text or a CSV file.

Parsing checks every row against the model's capabilities and the person's limits
and reports each bad row by number and field; a batch starts only when every row
is good and the whole batch fits the person's daily images and budgets (it is
refused up front, never half-started). Rows are admitted through ``jobs.submit``,
so the ordinary reservation and ledger apply to each image. Rows beyond the
person's jobs-in-progress limit wait in the batch, reserving nothing, and start
as the person's images finish (:func:`feed_waiting`, after each job and from beat).

An economy batch (every row's model has a Gemini Batch API route) starts all its rows
at once, reserved at the Batch price, and goes to Google as one Batch API job per model
(:mod:`generations.economy`); the confirm step shows both prices.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts import limits, quotas
from accounts.models import CSV_BOM, STUDIO, csv_text, csv_usd, format_left, format_usd
from accounts.quotas import QuotaExceeded
from generations import economy, jobs
from generations.models import Batch, Generation, ModelSpec

log = logging.getLogger(__name__)

# Tunables (settings override): how many rows a batch may have and how large its CSV.
MAX_ROWS = settings.NANOWEB_BATCH_MAX_ROWS
MAX_CSV_BYTES = settings.NANOWEB_BATCH_MAX_CSV_BYTES

CSV_COLUMNS = ("prompt", "model", "aspect_ratio", "size", "count")
CSV_ALIASES = {
    "aspect": "aspect_ratio",
    "ratio": "aspect_ratio",
    "image_size": "size",
    "n": "count",
    "images": "count",
}
# jobs.SubmitError fields → the column a person wrote them in
FIELD_COLUMNS = {
    "prompt": "prompt",
    "model": "model",
    "aspect_ratio": "aspect_ratio",
    "image_size": "size",
    "count": "count",
}


class BatchError(Exception):
    """Why a batch cannot start: a list of messages (one per bad row) or one refusal."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass
class Defaults:
    """What rows that do not say otherwise use (the form's pickers)."""

    model: ModelSpec
    aspect_ratio: str = "1:1"
    image_size: str | None = None
    count: int = 1


@dataclass
class Row:
    number: int  # as a person sees it: the line in the textarea, the row in a spreadsheet
    request: jobs.JobRequest


@dataclass
class Plan:
    rows: list[Row]
    images: int
    micros: int
    refusal: str | None = None  # the limit the whole batch would exceed
    per_row: list[int] = field(default_factory=list)
    at_once: int | None = None  # the jobs-in-progress limit, when the batch is larger
    # Economy (the Gemini Batch API): what it may cost, or why it is not offered / refused.
    economy_micros: int | None = None
    economy_unavailable: str = ""
    economy_refusal: str | None = None

    @property
    def economy_ok(self) -> bool:
        return self.economy_micros is not None and not (
            self.economy_unavailable or self.economy_refusal
        )

    @property
    def startable(self) -> bool:
        return not self.refusal or self.economy_ok

    @property
    def saving(self) -> int:
        return self.micros - self.economy_micros if self.economy_micros is not None else 0


def parse_lines(text: str, defaults: Defaults) -> list[Row]:
    """One prompt per non-empty line, each with the form's settings."""
    rows = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if line.strip():
            rows.append(
                Row(
                    number,
                    _request(
                        defaults.model,
                        line.strip(),
                        defaults.aspect_ratio,
                        defaults.image_size,
                        defaults.count,
                    ),
                )
            )
    return rows


def _cells(reader):
    """The rows of a CSV reader, a malformed row (a cell over the csv module's limit,
    a NUL byte) refused as a BatchError that names the row."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            limit = csv.field_size_limit()
            reason = (
                _("a cell is longer than %(limit)s characters") % {"limit": f"{limit:,}"}
                if "field larger" in str(exc)
                else str(exc)
            )
            raise BatchError(
                [_("Row %(row)s: %(reason)s.") % {"row": reader.line_num, "reason": reason}]
            ) from None
        yield cells


def csv_too_large(size: int) -> str:
    return _("The CSV file is %(size)s KB; the limit is %(limit)s KB.") % {
        "size": f"{size // 1024:,}",
        "limit": f"{MAX_CSV_BYTES // 1024:,}",
    }


def parse_csv(data: bytes, defaults: Defaults, models: list[ModelSpec]) -> list[Row]:
    """A header row (prompt, and optionally model, aspect_ratio, size, count), then one
    prompt per row; empty cells take the form's settings. Raises BatchError."""
    if len(data) > MAX_CSV_BYTES:
        raise BatchError([csv_too_large(len(data))])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BatchError([_("The CSV file is not UTF-8 text; save it as “CSV UTF-8”.")]) from None
    reader = _cells(csv.reader(io.StringIO(text)))
    header = [_column(h) for h in next(reader, [])]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown or "prompt" not in header:
        names = ", ".join(repr(u) for u in unknown)
        raise BatchError(
            [
                ngettext("Unknown column %(names)s", "Unknown columns %(names)s", len(unknown))
                % {"names": names}
                if unknown
                else _("The CSV has no “prompt” column"),
                _("The first row must name the columns: %(columns)s (only prompt is required).")
                % {"columns": ", ".join(CSV_COLUMNS)},
            ]
        )
    by_slug = {m.slug: m for m in models} | {m.name.lower(): m for m in models}
    rows, errors = [], []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        values = dict(zip(header, (c.strip() for c in cells), strict=False))
        request, found = _csv_request(values, defaults, by_slug)
        if request is not None:
            found += [e for e in jobs.problems(request) if e.field not in _fields(found)]
        for exc in found:  # every problem of the row, not just its first
            column = FIELD_COLUMNS.get(exc.field or "", exc.field or "settings")
            errors.append(_row_error(number, column, exc.message))
        if not found:
            rows.append(Row(number, request))
    if errors:
        raise BatchError(errors)
    return rows


def _row_error(number: int, column: str, message: str) -> str:
    """A CSV row's problem; ``column`` is the column's own (English) name."""
    return _("Row %(row)s, %(column)s: %(message)s") % {
        "row": number,
        "column": column,
        "message": message,
    }


def _column(name: str) -> str:
    name = name.strip().lower().replace(" ", "_")
    return CSV_ALIASES.get(name, name)


def _fields(errors: list[jobs.SubmitError]) -> set[str | None]:
    return {e.field for e in errors}


def _csv_request(
    values: dict, defaults: Defaults, by_slug: dict
) -> tuple[jobs.JobRequest | None, list[jobs.SubmitError]]:
    """A row's request and the problems of its own cells (a model it cannot use, a count
    that is not a number, no prompt); the request is None when it cannot be built."""
    found = []
    model = defaults.model
    if values.get("model"):
        model = by_slug.get(values["model"].lower())
        if model is None:
            slugs = ", ".join(sorted({m.slug for m in by_slug.values()}))
            found.append(
                jobs.SubmitError(
                    _("“%(model)s” is not a model you can use here (try %(models)s).")
                    % {"model": values["model"], "models": slugs},
                    field="model",
                )
            )
    count = defaults.count
    try:
        count = int(values.get("count") or defaults.count)
    except ValueError:
        found.append(
            jobs.SubmitError(
                _("“%(value)s” is not a whole number.") % {"value": values["count"]},
                field="count",
            )
        )
    if not values.get("prompt"):
        found.append(jobs.SubmitError(_("The prompt is empty."), field="prompt"))
    if model is None:
        return None, found
    size = values.get("size") or (defaults.image_size if model == defaults.model else None)
    if model.sizes and not size:
        size = model.default_size()
    request = _request(
        model,
        values.get("prompt") or "",
        values.get("aspect_ratio") or defaults.aspect_ratio,
        size.upper() if size else None,
        count,
    )
    return request, found


def _request(model, prompt, aspect_ratio, image_size, count) -> jobs.JobRequest:
    return jobs.JobRequest(
        model=model,
        prompt=prompt,
        aspect_ratio=aspect_ratio,
        image_size=image_size,
        count=count,
        source="batch",
    )


def check(user, rows: list[Row], *, csv_rows: bool = False) -> Plan:
    """Validate every row (all errors at once) and estimate the whole batch.

    Raises BatchError for bad rows; a batch over a limit comes back as a Plan with
    ``refusal`` set, so the confirm step can show the cost and the limit together.
    """
    if not rows:
        raise BatchError([_("Write at least one prompt (one per line), or choose a CSV file.")])
    if len(rows) > MAX_ROWS:
        raise BatchError(
            [
                _("The batch has %(rows)s prompts; the limit is %(limit)s.")
                % {"rows": len(rows), "limit": MAX_ROWS}
            ]
        )
    errors, per_row = [], []
    for row in rows:
        try:
            jobs.validate(row.request)
            jobs.validate_for(user, row.request)
            per_row.append(jobs.estimate_request(row.request) * row.request.count)
        except jobs.SubmitError as exc:
            column = FIELD_COLUMNS.get(exc.field or "", exc.field or "settings")
            if csv_rows:
                errors.append(_row_error(row.number, column, exc.message))
            else:
                errors.append(
                    _("Line %(line)s, %(column)s: %(message)s")
                    % {"line": row.number, "column": column, "message": exc.message}
                )
    if errors:
        raise BatchError(errors)
    images = sum(r.request.count for r in rows)
    plan = Plan(rows=rows, images=images, micros=sum(per_row), per_row=per_row)
    plan.refusal = over_limit(user, images, plan.micros)
    at_once = limits.for_user(user).max_concurrent
    plan.at_once = at_once if at_once is not None and images > at_once else None
    _plan_economy(user, plan)
    return plan


def _plan_economy(user, plan: Plan) -> None:
    """What the batch would cost as an economy batch, or why it cannot be one."""
    plan.economy_unavailable = economy.unavailable(list({r.request.model for r in plan.rows}))
    if plan.economy_unavailable:
        return
    try:
        plan.economy_micros = sum(
            jobs.estimate_request(r.request, economy=True) * r.request.count for r in plan.rows
        )
    except jobs.SubmitError as exc:
        plan.economy_unavailable = exc.message
        return
    if plan.at_once is not None:
        plan.economy_refusal = _(
            "An economy batch sends all its %(images)s images to Google at once, but your "
            "limit of jobs in progress is %(limit)s. Start it at the normal price, or make "
            "it smaller."
        ) % {"images": plan.images, "limit": plan.at_once}
        return
    plan.economy_refusal = over_limit(user, plan.images, plan.economy_micros)


def over_limit(user, images: int, micros: int, *, retrying: bool = False) -> str | None:
    """The first of the person's limits the whole batch (or, ``retrying``, a retry of
    its failed images) would exceed, in words."""
    quota = quotas.summary(user)
    day, month = quota.images_room, quota.budget_room
    # Translators: the subject of the refusals below ("… needs 5 images but …").
    what = _("Retrying the failed images") if retrying else _("This batch")
    if day.left is not None and images > day.left:
        values = {
            "what": what,
            "images": images,
            "limit": day.limit,
            "left": day.left,
            "team": quota.team,
        }
        if day.shared:
            return (
                _(
                    "%(what)s needs %(images)s images but team %(team)s's shared daily limit "
                    "of %(limit)s images leaves %(left)s today. Nothing was started."
                )
                % values
            )
        return (
            _(
                "%(what)s needs %(images)s images but your daily limit of %(limit)s images "
                "leaves %(left)s today. Nothing was started."
            )
            % values
        )
    if month.left is not None and micros > month.left:
        values = {
            "what": what,
            "cost": format_usd(micros, STUDIO, rounding="up"),
            "budget": format_left(month.limit),
            "left": format_left(month.left),
            "team": quota.team,
        }
        if month.shared:
            return (
                _(
                    "%(what)s may cost up to %(cost)s but team %(team)s's shared monthly "
                    "budget of %(budget)s has %(left)s left. Nothing was started."
                )
                % values
            )
        return (
            _(
                "%(what)s may cost up to %(cost)s but your monthly budget of %(budget)s has "
                "%(left)s left. Nothing was started."
            )
            % values
        )
    return None


def start(user, name: str, plan: Plan, *, economy_mode: bool = False) -> Batch:
    """Start every row that fits now and keep the rest waiting for room in the
    person's jobs in progress. Any other refusal (a team limit, or a race with
    another request) refuses the whole batch: one transaction, nothing started.
    ``economy_mode``: every row now, at the Batch price, through the Batch API."""
    if economy_mode:
        return _start_economy(user, name, plan)
    if plan.refusal:
        raise BatchError([plan.refusal])
    try:
        with transaction.atomic():
            batch = Batch.objects.create(user=user, name=name[:200] or _default_name(plan))
            _admit(user, batch, [row.request for row in plan.rows], strict=True)
    except jobs.SubmitError as exc:
        raise BatchError([_("%(reason)s Nothing was started.") % {"reason": exc.message}]) from exc
    return batch


def _start_economy(user, name: str, plan: Plan) -> Batch:
    refusal = plan.economy_unavailable or plan.economy_refusal
    if refusal:
        raise BatchError([refusal])
    mine = limits.for_user(user)
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                user=user, name=name[:200] or _default_name(plan), economy=True
            )
            rows = []
            for row in plan.rows:
                rows += jobs.submit(user, row.request, mine, economy=True)
            Generation.objects.filter(pk__in=[g.pk for g in rows]).update(batch=batch)
            economy.plan_upstream(batch, rows)
    except jobs.SubmitError as exc:
        raise BatchError([_("%(reason)s Nothing was started.") % {"reason": exc.message}]) from exc
    return batch


def _admit(user, batch: Batch, requests: list[jobs.JobRequest], *, strict: bool) -> int:
    """Submit ``requests`` in order until the jobs-in-progress limit is full; the rest
    wait in ``batch.waiting``. Another refusal raises when ``strict``, otherwise it
    stops the batch (``batch.stalled`` says why) until it is tried again."""
    started, stalled = 0, ""
    for i, request in enumerate(requests):
        try:
            with transaction.atomic():
                made = jobs.submit(user, request)
                Generation.objects.filter(pk__in=[g.pk for g in made]).update(batch=batch)
            started += 1
        except jobs.SubmitError as exc:
            if not _jobs_in_progress_full(exc):
                if strict:
                    raise
                stalled = exc.message
            batch.waiting = [_as_row(r) for r in requests[i:]]
            break
    else:
        batch.waiting = []
    batch.stalled = stalled if batch.waiting else ""
    batch.save(update_fields=["waiting", "stalled"])
    return started


def _jobs_in_progress_full(exc: jobs.SubmitError) -> bool:
    return exc.limit == QuotaExceeded.IN_PROGRESS


def _as_row(request: jobs.JobRequest) -> dict:
    return {
        "model": request.model.slug,
        "prompt": request.prompt,
        "aspect_ratio": request.aspect_ratio,
        "image_size": request.image_size,
        "count": request.count,
    }


def _from_row(row: dict) -> jobs.JobRequest:
    model = ModelSpec.objects.filter(slug=row["model"]).first()
    if model is None:
        # Not translated: a worker stores it as the batch's ``stalled`` (shown as it is).
        raise jobs.SubmitError(f"The model “{row['model']}” no longer exists.", field="model")
    return _request(model, row["prompt"], row["aspect_ratio"], row["image_size"], row["count"])


def _locked(batches):
    """Lock the batch rows alone, in the mode that leaves foreign-key checks free.

    ``FOR UPDATE`` with ``select_related`` would also lock the owner's user row, and
    plain ``FOR UPDATE`` blocks every insert that references the row: a job settling
    (its image and ledger rows point at the user) then waits on us at commit while we
    wait on its quota counters — a deadlock on PostgreSQL. ``FOR NO KEY UPDATE OF``
    the batch serialises the feeders and nothing else.
    """
    return batches.select_for_update(of=("self",), no_key=True)


def feed(batch_pk) -> int:
    """Start what fits of one batch's waiting rows; how many rows started."""
    with transaction.atomic():
        batch = _locked(Batch.objects.select_related("user")).filter(pk=batch_pk).first()
        if batch is None or not batch.waiting:
            return 0
        try:
            requests = [_from_row(row) for row in batch.waiting]
        except jobs.SubmitError as exc:
            batch.stalled = exc.message
            batch.save(update_fields=["stalled"])
            return 0
        return _admit(batch.user, batch, requests, strict=False)


def feed_waiting(user_id=None) -> int:
    """Feed every batch with waiting rows (one person's, or everyone's), oldest first."""
    pending = Batch.objects.exclude(waiting=[]).order_by("created")
    if user_id is not None:
        pending = pending.filter(user_id=user_id)
    return sum(feed(pk) for pk in pending.values_list("pk", flat=True))


def feed_after(generation_id) -> None:
    """A job finished (in a batch or not): its owner's waiting batch rows may start now."""
    user_id = Generation.objects.filter(pk=generation_id).values_list("user_id", flat=True).first()
    if user_id is None:
        return
    try:
        feed_waiting(user_id)
    except Exception:  # the beat task tries again; the finished job is not affected
        log.exception("Could not start the waiting rows of %s's batches", user_id)


def _default_name(plan: Plan) -> str:
    first = plan.rows[0].request.prompt
    first = first[:60] + "…" if len(first) > 60 else first
    more = len(plan.rows) - 1
    if not more:
        return first
    return ngettext("%(prompt)s and %(count)s more", "%(prompt)s and %(count)s more", more) % {
        "prompt": first,
        "count": more,
    }


@dataclass
class Progress:
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0  # cancelled jobs, and waiting rows dropped by a cancel
    spent: int = 0
    retryable: int = 0  # failed and cancelled jobs (dropped rows were never jobs)

    @property
    def total(self) -> int:
        return self.queued + self.running + self.finished

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 0

    @property
    def active(self) -> bool:
        return bool(self.queued or self.running)


def progress_filters(prefix: str = "") -> dict:
    """Aggregates that count a batch's generations by state (for one or many batches)."""
    p = prefix
    return {
        "n_queued": Count(f"{p}pk", filter=Q(**{f"{p}status": "queued"})),
        "n_running": Count(f"{p}pk", filter=Q(**{f"{p}status": "running"})),
        "n_done": Count(f"{p}pk", filter=Q(**{f"{p}status": "succeeded"})),
        "n_failed": Count(f"{p}pk", filter=Q(**{f"{p}status": "failed"})),
        "n_cancelled": Count(f"{p}pk", filter=Q(**{f"{p}status": "cancelled"})),
        "n_spent": Sum(f"{p}actual_micros"),
    }


def progress(batch: Batch) -> Progress:
    row = Generation.objects.filter(batch=batch).aggregate(**progress_filters())
    return _progress_of(batch, row.get)


def _progress_of(batch: Batch, get) -> Progress:
    """Counts from the aggregates (``get(name)``); rows still waiting count as queued."""
    return Progress(
        queued=get("n_queued") + batch.waiting_images,
        running=get("n_running"),
        done=get("n_done"),
        failed=get("n_failed"),
        cancelled=get("n_cancelled") + batch.cancelled_waiting,
        spent=get("n_spent") or 0,
        retryable=get("n_failed") + get("n_cancelled"),
    )


def batches_for(user):
    """The person's batches, newest first, each with its counts (one query)."""
    rows = Batch.objects.filter(user=user).annotate(**progress_filters("generations__"))
    for batch in rows:
        batch.progress = _progress_of(batch, lambda name, b=batch: getattr(b, name))
        yield batch


def cancel(user, batch: Batch) -> tuple[list[Generation], int]:
    """Cancel what has not started, through the ordinary cancel path (money returned),
    and drop the rows still waiting (nothing was reserved for them). Returns the
    cancelled jobs and the number of waiting images dropped."""
    with transaction.atomic():
        locked = _locked(Batch.objects).get(pk=batch.pk)
        dropped = locked.waiting_images
        locked.waiting, locked.stalled = [], ""
        locked.cancelled_waiting += dropped  # still counted on the batch page
        locked.save(update_fields=["waiting", "stalled", "cancelled_waiting"])
        if locked.economy:  # Google is asked to call its jobs off; the rows are refunded
            economy.request_cancel(locked)
    batch.waiting, batch.stalled = [], ""
    waiting = batch.generations.filter(status=Generation.QUEUED)
    if not batch.economy:
        waiting = waiting.filter(started__isnull=True)
    request_ids = set(waiting.values_list("request_id", flat=True))
    cancelled = []
    for request_id in request_ids:
        cancelled += jobs.cancel(user, request_id)
    return cancelled, dropped


def retry_failed(user, batch: Batch, *, expired_only: bool = False) -> list[Generation]:
    """Start the batch's failed images again at the normal (interactive) price, also in
    an economy batch. ``expired_only``: just the rows Google let expire ("run the rest
    now at the normal price", which is never done automatically)."""
    which = (
        batch.expired_rows
        if expired_only
        else batch.generations.filter(status__in=[Generation.FAILED, Generation.CANCELLED])
    )
    failed = list(which.select_related("model", "parent_image").prefetch_related("references"))
    if not failed:
        raise BatchError([_("Nothing in this batch failed, so there is nothing to retry.")])
    try:
        requests = [jobs.request_like(g) for g in failed]  # reads each reference once
        plan_micros = sum(jobs.estimate_request(r) for r in requests)
        refusal = over_limit(user, len(failed), plan_micros, retrying=True)
        if refusal:
            raise BatchError([refusal])
        return jobs.retry(user, failed, requests)
    except jobs.SubmitError as exc:
        raise BatchError([_("%(reason)s Nothing was started.") % {"reason": exc.message}]) from exc


# --- The zip of results (streamed by generations.zips) ---


def zip_members(batch: Batch) -> list[tuple[Generation, str]]:
    """Each generation of the batch with its file name in the zip ("" without an image)."""
    gens = batch.generations.select_related("model", "image").order_by("created", "pk")
    members = []
    for n, gen in enumerate(gens, start=1):
        name = ""
        if gen.status == Generation.SUCCEEDED and hasattr(gen, "image"):
            ext = gen.image.file.name.rsplit(".", 1)[-1]
            name = f"{n:03d}-{_slug(gen.prompt)}.{ext}"
        members.append((gen, name))
    return members


def _slug(prompt: str) -> str:
    return slugify(prompt, allow_unicode=True)[:40].strip("-") or "image"


def manifest_csv(members: list[tuple[Generation, str]]) -> bytes:
    out = io.StringIO()
    out.write(CSV_BOM)
    writer = csv.writer(out)
    writer.writerow(["prompt", "model", "aspect_ratio", "size", "cost_usd", "file", "status"])
    for gen, name in members:
        writer.writerow(
            [
                csv_text(gen.prompt),
                csv_text(gen.model.label),
                gen.aspect_ratio,
                gen.image_size,
                csv_usd(gen.actual_micros),
                csv_text(name),
                gen.status,
            ]
        )
    return out.getvalue().encode()


def zip_entries(batch: Batch) -> Iterator[tuple[str, object]]:
    """A manifest.csv, then the batch's images, for :func:`zips.stream`. Every row is
    in the manifest, also those without an image."""
    members = zip_members(batch)
    yield "manifest.csv", manifest_csv(members)
    for gen, name in members:
        if name:
            yield name, gen.image.file
