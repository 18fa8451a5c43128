"""One vocabulary of why a job made no image, classified once and acted on in one place.

Providers classify every upstream answer into an :class:`ErrorKind`; the engine adds
the outcomes of its own (not saved, deadline, no route) and the studio its one
(cancelled). Each kind has a title and a plain-language reason, shown on the job
card, in the API's errors and in the admin. What the engine does about each kind
(retry budgets, which ones count against a route's breaker) lives in
:mod:`generations.resilience`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


class ErrorKind(models.TextChoices):
    # What an upstream said (DESIGN.md, "The upstream path")
    RATE_LIMITED = "rate_limited", _("Provider busy")  # 429 per minute: wait, back off
    KEY_EXHAUSTED = "key_exhausted", _("Provider quota used up")  # per-day quota: rest the key
    TRANSIENT = "transient", _("Provider unavailable")  # 500/502/503, connection errors
    SLOW = "slow", _("Provider too slow")  # 504, read timeout: retry with a longer timeout
    PERMANENT = "permanent", _("The request was refused")  # 400 INVALID_ARGUMENT: never retry
    REFUSED = "refused", _("Not available through this provider")  # fail over, never retry here
    MODEL_GONE = "model_gone", _("Model shut down by the provider")  # 404: retire the route
    KEY_INVALID = "key_invalid", _("Provider key not working")  # 401/403: disable the key
    OUT_OF_CREDIT = (
        "out_of_credit",
        _("Provider account out of credit"),
    )  # rest the key, tell admins
    BLOCKED = "blocked", _("Blocked by the safety filter")
    NO_IMAGE = "no_image", _("No image returned")  # a 200 without an image: one retry
    CORRUPT = "corrupt", _("Damaged image from provider")  # unreadable body or image
    # What happened on our side
    NO_ROUTE = "no_route", _("No provider available")
    NOT_SAVED = "not_saved", _("Could not save the image")
    DEADLINE = "deadline", _("Timed out")
    CANCELLED = "cancelled", _("Cancelled")


# Kinds after which another attempt may succeed (on this route, another key, another route).
RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.KEY_EXHAUSTED,
        ErrorKind.TRANSIENT,
        ErrorKind.SLOW,
        ErrorKind.KEY_INVALID,
        ErrorKind.OUT_OF_CREDIT,
        ErrorKind.NO_IMAGE,
        ErrorKind.CORRUPT,
        ErrorKind.REFUSED,
        ErrorKind.MODEL_GONE,
    }
)

# An Attempt is "ok" or the kind of its failure.
OK = "ok"
ATTEMPT_OUTCOMES = [(OK, _("Image made")), *ErrorKind.choices]


@dataclass(frozen=True)
class Explanation:
    title: str | Promise
    reason: str | Promise


REASONS: dict[str, Promise] = {
    ErrorKind.BLOCKED: _("The provider's safety filter refused this prompt or the image it made."),
    ErrorKind.NO_IMAGE: _("The model answered without an image, even after a second try."),
    ErrorKind.TRANSIENT: _("The provider stayed unavailable after several retries."),
    ErrorKind.CORRUPT: _("The provider kept sending damaged images, even after retries."),
    ErrorKind.SLOW: _("The provider did not answer in time, even after retries."),
    ErrorKind.RATE_LIMITED: _("The provider stayed at its rate limit until the job's deadline."),
    ErrorKind.KEY_EXHAUSTED: _("Every provider key for this model has used its daily quota."),
    ErrorKind.KEY_INVALID: _("The provider refused the instance's keys; an admin has been told."),
    ErrorKind.OUT_OF_CREDIT: _(
        "The instance's account with the provider has run out of credit; an admin has been told."
    ),
    ErrorKind.PERMANENT: _("The provider refused the request as invalid; retrying will not help."),
    ErrorKind.REFUSED: _(
        "The provider will not serve this account or region, and no other provider for "
        "this model could take the job."
    ),
    ErrorKind.MODEL_GONE: _(
        "The provider has shut this model down, and no other provider for it could take the job."
    ),
    ErrorKind.NO_ROUTE: _("No provider can make images with this model right now."),
    ErrorKind.NOT_SAVED: _(
        "The image arrived but this instance could not store it (a full disk or a database "
        "problem), even after retries. An admin can see why in the logs."
    ),
    ErrorKind.DEADLINE: _("No image arrived before the job's deadline."),
    ErrorKind.CANCELLED: _("You cancelled it before it was made."),
}
UNKNOWN = Explanation(
    _("No image this time"), _("Something went wrong on the way to the provider.")
)


def explain(kind: str) -> Explanation:
    """Title and plain-language reason of a failure kind (an unknown one says so)."""
    if kind not in ErrorKind.values:
        return UNKNOWN
    return Explanation(ErrorKind(kind).label, REASONS[kind])
