"""The limits that apply to a person: their own, or their team's member defaults.

A member of a team uses the team's limit fields unless an admin unticked
"uses team limits" on them; people without a team always use their own. The
team's shared totals (daily images, monthly budget) apply to every member on top,
in the same admission (see :func:`accounts.quotas.reserve`).
"""

from __future__ import annotations

from dataclasses import dataclass

SIZE_ORDER = {"512": 0, "1K": 1, "2K": 2, "4K": 3}


@dataclass(frozen=True)
class EffectiveLimits:
    daily_images: int | None
    monthly_budget: int | None  # micro-USD
    max_concurrent: int | None
    max_size: str  # "" = any
    max_per_request: int | None
    max_references: int | None
    allowed_model_ids: frozenset[int] | None  # None = every model
    source: str  # "own" or "team <name>"
    team: str = ""  # the team whose member limits these are; "" for the person's own

    def allows_model(self, model) -> bool:
        return self.allowed_model_ids is None or model.pk in self.allowed_model_ids

    def allows_size(self, size: str | None) -> bool:
        # A size this table does not know (an admin added it) counts as the largest.
        return not (self.max_size and size) or (
            SIZE_ORDER.get(size, len(SIZE_ORDER)) <= SIZE_ORDER[self.max_size]
        )


def holder(user):
    """Whose limit fields apply to ``user``: their team's member limits, or their own."""
    return user.team if user.team_id and user.uses_team_limits else user


def for_user(user) -> EffectiveLimits:
    owner = holder(user)
    allowed = frozenset(owner.allowed_models.values_list("pk", flat=True)) or None
    return EffectiveLimits(
        daily_images=owner.daily_image_limit,
        monthly_budget=owner.monthly_budget_micros,
        max_concurrent=owner.max_concurrent_jobs,
        max_size=owner.max_image_size,
        max_per_request=owner.max_images_per_request,
        max_references=owner.max_reference_images,
        allowed_model_ids=allowed,
        source=f"team {owner.name}" if owner is not user else "own",
        team=owner.name if owner is not user else "",
    )
