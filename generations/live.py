"""Live status: what the page-level poller asks for and what the cards say.

One request per page (not one per card) carries the cards the page shows as
``id:signature`` pairs; the answer re-renders only the cards whose signature
changed, with a fixed number of queries however many cards are in flight.
Elapsed time is counted in the browser from ``data-started``, so a running
card does not change (and is not re-sent) every second.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from generations.models import Generation

MAX_CARDS = 200  # a page never shows more in-flight cards than a batch has rows


def signature(job: Generation) -> str:
    """What a card shows that can change while the page is open."""
    position = getattr(job, "queue_position", None)
    return f"{job.status}.{job.stage}.{position or ''}".replace(" ", "_").replace(":", "")


def annotate_positions(jobs) -> list[Generation]:
    """Set ``queue_position`` (1 = next) on queued jobs, in one query for all of them.

    The line is every queued job due to start, everyone's, in the order workers
    take them (earliest ``next_attempt_at`` first).
    """
    jobs = list(jobs)
    queued = [j.pk for j in jobs if j.status == Generation.QUEUED]
    positions = {}
    if queued:
        ahead = (
            Generation.objects.filter(status=Generation.QUEUED)
            .filter(
                Q(next_attempt_at__lt=OuterRef("next_attempt_at"))
                | Q(next_attempt_at=OuterRef("next_attempt_at"), created__lt=OuterRef("created"))
            )
            .order_by()
            .values("status")
            .annotate(n=Count("pk"))
            .values("n")
        )
        positions = dict(
            Generation.objects.filter(pk__in=queued)
            .annotate(position=Coalesce(Subquery(ahead), 0) + 1)
            .values_list("pk", "position")
        )
    for job in jobs:
        job.queue_position = positions.get(job.pk)
    return jobs


def in_flight_count(user) -> int:
    return Generation.objects.for_user(user).in_flight().count()


def parse_cards(raw: str) -> dict[uuid.UUID, str]:
    """``"<uuid>:<sig>,<uuid>:<sig>"`` → {id: sig}; malformed pairs are ignored."""
    cards = {}
    for pair in (raw or "").split(",")[:MAX_CARDS]:
        pk, _, sig = pair.partition(":")
        try:
            cards[uuid.UUID(pk.strip())] = sig.strip()
        except ValueError:
            continue
    return cards


@dataclass
class PollResult:
    changed: list[Generation]
    in_flight: int
    any_finished: bool


def parse_id(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID((raw or "").strip())
    except ValueError:
        return None


def parse_ids(raw: str | None) -> set[uuid.UUID]:
    """``"<uuid>,<uuid>"`` → ids; malformed ones are ignored."""
    return {pk for part in (raw or "").split(",")[:MAX_CARDS] if (pk := parse_id(part))}


def started_since(
    batch, after: uuid.UUID | None, shown: set[uuid.UUID] = frozenset()
) -> list[Generation]:
    """A batch's jobs the page does not show yet: those made after its last card.

    Rows that waited for a free slot become jobs while the page is open; the
    page sends its last card's id and gets these appended. With no card yet,
    every job of the batch is new. ``shown`` are newer cards the page has
    already (a failed card's Retry swaps its new job in where the old one was).
    """
    jobs = batch.generations.select_related("model", "image", "route__model").exclude(pk__in=shown)
    if after is not None:
        # The owner's job, though perhaps no longer in the batch (retried in another tab).
        last = (
            Generation.objects.filter(pk=after, user_id=batch.user_id)
            .values_list("created", flat=True)
            .first()
        )
        if last is None:
            return []  # not this person's card: nothing to append safely
        jobs = jobs.filter(Q(created__gt=last) | Q(created=last, pk__gt=after))
    return annotate_positions(jobs.order_by("created", "pk")[:MAX_CARDS])


def poll(user, cards: dict[uuid.UUID, str]) -> PollResult:
    """The cards (of this user's jobs) whose signature differs from what the page shows."""
    jobs = []
    if cards:
        jobs = annotate_positions(
            Generation.objects.for_user(user)
            .filter(pk__in=list(cards))
            .select_related("model", "image", "route__model")
        )
    changed = [j for j in jobs if signature(j) != cards.get(j.pk)]
    return PollResult(
        changed=changed,
        in_flight=in_flight_count(user),
        any_finished=any(j.is_finished for j in changed),
    )
