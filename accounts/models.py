from __future__ import annotations

import datetime as dt
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.periods import next_month_start

MICROS_PER_USD = 1_000_000


def usd_to_micros(usd: float | str) -> int:
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(str(usd)) * MICROS_PER_USD).quantize(Decimal(1), ROUND_HALF_UP))


# The one rule for showing money (issue 20, defect 12), applied by ``format_usd``:
# balances and budgets in cents; what a job costs to four places where people make
# images (studio, gallery, batches); exact to the micro-dollar, all six places, in the
# ledger, billing, the admin, messages about charges and every export.
CENTS, STUDIO, EXACT = 2, 4, 6


def format_usd(micros: int | None, places: int = EXACT, *, rounding: str = "half") -> str:
    """``micros`` as dollars with exactly ``places`` decimals: $0.038820 (EXACT),
    $0.0388 (STUDIO), $19.92 (CENTS); None → "unlimited".

    ``rounding`` is "half" (half-even), "up" for an "up to" estimate, which must not show
    less than it can cost, or "down" for what is left, which must not show more.
    """
    if micros is None:
        return "unlimited"
    exact = Decimal(micros) / MICROS_PER_USD
    shown = exact.quantize(Decimal(1).scaleb(-places), _ROUNDING[rounding])
    sign = "-" if shown < 0 else ""
    return f"{sign}${abs(shown):,.{places}f}"


def format_left(micros: int | None) -> str:
    """A budget, a limit or what is left of one: cents, never rounded up ($0.02 for
    $0.028290 left)."""
    return format_usd(micros, CENTS, rounding="down")


_ROUNDING = {"half": ROUND_HALF_EVEN, "up": ROUND_CEILING, "down": ROUND_FLOOR}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value) -> str:
    """A free-text cell (a prompt, a name) a spreadsheet shows as text: one that starts
    like a formula (=, +, -, @, tab, CR) gets a leading apostrophe, so opening an
    export never runs what someone typed into a prompt (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


# Excel on Windows opens a CSV in the system's code page (GBK on Chinese Windows) unless
# the file starts with a byte-order mark; with it, every Chinese prompt reads right.
CSV_BOM = "\ufeff"


def csv_usd(micros: int | None) -> str:
    """Plain decimal dollars with all six places (``0.067938``), so a spreadsheet reads a
    number and keeps every micro-dollar; empty for no amount."""
    if micros is None:
        return ""
    return f"{Decimal(micros) / MICROS_PER_USD:.6f}"


def default_daily_images() -> int:
    return settings.NANOWEB_DEFAULT_DAILY_IMAGES


def default_monthly_budget() -> int:
    return usd_to_micros(settings.NANOWEB_DEFAULT_MONTHLY_BUDGET_USD)


def default_max_concurrent_jobs() -> int:
    return settings.NANOWEB_DEFAULT_MAX_CONCURRENT_JOBS


SIZES = [("1K", "1K"), ("2K", "2K"), ("4K", "4K")]


class Limits(models.Model):
    """What one person may do. Empty means unlimited — set on purpose by an admin."""

    daily_image_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=default_daily_images,
        help_text="Images per day (quota time zone). Empty = unlimited.",
    )
    monthly_budget_micros = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        default=default_monthly_budget,
        help_text="Monthly budget in micro-USD (1 USD = 1,000,000). Empty = unlimited.",
    )
    max_concurrent_jobs = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=default_max_concurrent_jobs,
        help_text="Images in progress at once. Empty = unlimited.",
    )
    max_image_size = models.CharField(
        max_length=2,
        blank=True,
        choices=SIZES,
        help_text="Largest size allowed on models that offer sizes. Empty = any.",
    )
    max_images_per_request = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Empty = as many as the model allows."
    )
    max_reference_images = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Empty = as many as the model allows."
    )
    allowed_models = models.ManyToManyField(
        "generations.ModelSpec",
        blank=True,
        related_name="+",
        help_text="Models allowed. None selected = all.",
    )

    class Meta:
        abstract = True


class Team(Limits):
    """People who share a gallery space and, optionally, a budget.

    The limit fields are the defaults for members who use the team's limits; the
    ``shared_*`` limits are totals for the whole team, checked together with each
    member's own limits in the same admission.
    """

    name = models.CharField(max_length=100, unique=True)
    shared_daily_image_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Images per day for the whole team. Empty = unlimited."
    )
    shared_monthly_budget_micros = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Monthly budget shared by all members, in micro-USD. Empty = unlimited.",
    )
    created = models.DateTimeField(default=timezone.now)
    sign_in_domain = models.CharField(
        max_length=253,
        blank=True,
        help_text=(
            "Google Workspace (or single sign-on) domain, e.g. example.com: people who sign "
            "in with a verified address at this domain get an account in this team. "
            "Empty = invitation only."
        ),
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sign_in_domain"],
                condition=~Q(sign_in_domain=""),
                name="one_team_per_sign_in_domain",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.sign_in_domain = self.sign_in_domain.strip().lower().lstrip("@")
        super().save(*args, **kwargs)


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, email: str) -> User:
        return self.get(email__iexact=email)


class User(AbstractBaseUser, PermissionsMixin, Limits):
    """A person who signs in with an email address.

    Limits: ``None`` means unlimited, and is only ever set on purpose by an admin.
    """

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="members"
    )
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    uses_team_limits = models.BooleanField(
        default=True,
        help_text="Use the team's member limits. Untick to give this person their own.",
    )
    is_team_admin = models.BooleanField(
        default=False,
        help_text="Sees the whole team's usage and spend, and receives the team's budget alerts.",
    )
    # Empty: follow the browser (Accept-Language; the browser's time zone).
    language = models.CharField(max_length=16, blank=True, default="")
    time_zone = models.CharField(max_length=64, blank=True, default="")

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]


class QuotaCounter(models.Model):
    """Running totals for one user and one period; admission is a conditional UPDATE.

    The ledger always sums to these counters (``manage.py ledger_check``).
    """

    DAY, MONTH, LIVE = "day", "month", "live"
    PERIODS = [(DAY, "day"), (MONTH, "month"), (LIVE, "in progress")]
    LIVE_START = dt.date(2000, 1, 1)  # the one "live" row per user counts jobs in progress

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="quota_counters",
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="quota_counters"
    )
    period = models.CharField(max_length=5, choices=PERIODS)
    period_start = models.DateField()
    images_reserved = models.IntegerField(default=0)
    images_used = models.IntegerField(default=0)
    micros_reserved = models.BigIntegerField(default=0)
    micros_spent = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "period", "period_start"],
                condition=Q(user__isnull=False),
                name="one_counter_per_user_period",
            ),
            models.UniqueConstraint(
                fields=["team", "period", "period_start"],
                condition=Q(team__isnull=False),
                name="one_counter_per_team_period",
            ),
            models.CheckConstraint(
                condition=Q(user__isnull=True) ^ Q(team__isnull=True),
                name="counter_for_a_user_or_a_team",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.team} {self.period} {self.period_start}"


class LedgerEntry(models.Model):
    """Append-only record of every movement of money and image allowance.

    ``reserved_delta``/``spent_delta`` (micro-USD) and the image deltas sum, per
    user and quota day, to the :class:`QuotaCounter` rows.
    """

    RESERVE, SETTLE, RELEASE, GRANT, ADJUST = "reserve", "settle", "release", "grant", "adjust"
    KINDS = [(k, k) for k in (RESERVE, SETTLE, RELEASE, GRANT, ADJUST)]

    created = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT)
    generation = models.ForeignKey(
        "generations.Generation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_entries",
    )
    kind = models.CharField(max_length=8, choices=KINDS)
    quota_day = models.DateField()
    reserved_delta = models.BigIntegerField(default=0)
    spent_delta = models.BigIntegerField(default=0)
    images_reserved_delta = models.IntegerField(default=0)
    images_used_delta = models.IntegerField(default=0)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            # A redelivered task can never reserve, settle or release a job twice.
            models.UniqueConstraint(
                fields=["generation", "kind"],
                name="one_entry_per_generation_and_kind",
                condition=Q(kind__in=["reserve", "settle", "release"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {format_usd(self.spent_delta or self.reserved_delta)} {self.user}"

    PLAIN_KINDS = {
        RESERVE: "Held while the image is made",
        SETTLE: "Charged",
        RELEASE: "Returned, nothing charged",
        GRANT: "Extra room granted",
        ADJUST: "Corrected by an admin",
    }

    @property
    def plain_kind(self) -> str:
        return self.PLAIN_KINDS[self.kind]

    @property
    def amount(self) -> int:
        """The money this row moved, as a person reads it (a grant shows as positive room)."""
        if self.kind == self.RESERVE:
            return self.reserved_delta
        if self.kind == self.RELEASE:
            return -self.reserved_delta
        return -self.spent_delta if self.kind == self.GRANT else self.spent_delta


class BudgetAlert(models.Model):
    """A monthly budget crossed a threshold (80 % or 100 %); sent once per period.

    Exactly one of ``user`` and ``team`` is set. The row is the proof that the
    email went out and the source of the studio banner.
    """

    THRESHOLDS = (80, 100)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budget_alerts",
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="budget_alerts"
    )
    period_start = models.DateField(help_text="First day of the budget month.")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the monthly budget.")
    spent_micros = models.BigIntegerField(help_text="Spent and reserved when the alert fired.")
    budget_micros = models.BigIntegerField(help_text="The monthly budget at that moment.")
    created = models.DateTimeField(default=timezone.now)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "period_start", "threshold"],
                condition=Q(user__isnull=False),
                name="one_alert_per_user_month_threshold",
            ),
            models.UniqueConstraint(
                fields=["team", "period_start", "threshold"],
                condition=Q(team__isnull=False),
                name="one_alert_per_team_month_threshold",
            ),
            models.CheckConstraint(
                condition=Q(user__isnull=True) ^ Q(team__isnull=True),
                name="alert_for_a_user_or_a_team",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.team} {self.threshold}% of {self.period_start:%B %Y}"

    @property
    def headline(self) -> str:
        """What the studio banner and the email say."""
        who = "Your" if self.user_id else f"Team {self.team.name}'s shared"
        resets = next_month_start(self.period_start)
        if self.threshold >= 100:
            return (
                f"{who} monthly budget of {format_left(self.budget_micros)} is used up "
                f"({format_usd(self.spent_micros, CENTS)} charged). New images are refused until "
                f"it resets on {resets:%B} 1, or an admin raises it."
            )
        percent = self.spent_micros * 100 // self.budget_micros
        return (
            f"{who} monthly budget is {percent} % used: {format_usd(self.spent_micros, CENTS)} "
            f"of {format_left(self.budget_micros)}. It resets on {resets:%B} 1."
        )


class ApiToken(models.Model):
    """A named credential for the HTTP API; acts as its user, with the user's limits.

    Only an HMAC of the token is stored. ``prefix`` is the visible, unique start
    of the token (``nw_`` + a public id) used to find the row; the digest is then
    compared in constant time.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=32, unique=True)
    digest = models.CharField(max_length=64)
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Invitation(models.Model):
    """An admin asks someone by email to join a team; the link in the email lets them set
    a password or sign in with the team's provider. Only a hash of the link is stored."""

    email = models.EmailField()
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    is_team_admin = models.BooleanField(
        default=False, help_text="Joins as a team admin (sees the team's usage and spend)."
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    key_digest = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitation",
    )

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.email} → {self.team}"

    @property
    def is_usable(self) -> bool:
        return self.accepted_at is None and self.expires_at > timezone.now()
