from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from accounts.periods import next_month_start

MICROS_PER_USD = 1_000_000


def usd_to_micros(usd: float | str) -> int:
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
        return gettext("unlimited")
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
        _("daily image limit"),
        null=True,
        blank=True,
        default=default_daily_images,
        help_text=_("Images per day (quota time zone). Empty = unlimited."),
    )
    monthly_budget_micros = models.PositiveBigIntegerField(
        _("monthly budget"),
        null=True,
        blank=True,
        default=default_monthly_budget,
        help_text=_("Monthly budget in micro-USD (1 USD = 1,000,000). Empty = unlimited."),
    )
    max_concurrent_jobs = models.PositiveSmallIntegerField(
        _("images in progress at once"),
        null=True,
        blank=True,
        default=default_max_concurrent_jobs,
        help_text=_("Images in progress at once. Empty = unlimited."),
    )
    max_image_size = models.CharField(
        _("largest image size"),
        max_length=2,
        blank=True,
        choices=SIZES,
        help_text=_("Largest size allowed on models that offer sizes. Empty = any."),
    )
    max_images_per_request = models.PositiveSmallIntegerField(
        _("images per request"),
        null=True,
        blank=True,
        help_text=_("Empty = as many as the model allows."),
    )
    max_reference_images = models.PositiveSmallIntegerField(
        _("reference images per request"),
        null=True,
        blank=True,
        help_text=_("Empty = as many as the model allows."),
    )
    allowed_models = models.ManyToManyField(
        "generations.ModelSpec",
        blank=True,
        related_name="+",
        verbose_name=_("allowed models"),
        help_text=_("Models allowed. None selected = all."),
    )

    class Meta:
        abstract = True


class Team(Limits):
    """People who share a gallery space and, optionally, a budget.

    The limit fields are the defaults for members who use the team's limits; the
    ``shared_*`` limits are totals for the whole team, checked together with each
    member's own limits in the same admission.
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    shared_daily_image_limit = models.PositiveIntegerField(
        _("shared daily image limit"),
        null=True,
        blank=True,
        help_text=_("Images per day for the whole team. Empty = unlimited."),
    )
    shared_monthly_budget_micros = models.PositiveBigIntegerField(
        _("shared monthly budget"),
        null=True,
        blank=True,
        help_text=_("Monthly budget shared by all members, in micro-USD. Empty = unlimited."),
    )
    created = models.DateTimeField(_("created"), default=timezone.now)
    sign_in_domain = models.CharField(
        _("sign-in domain"),
        max_length=253,
        blank=True,
        help_text=_(
            "Google Workspace (or single sign-on) domain, e.g. example.com: people who sign "
            "in with a verified address at this domain get an account in this team. "
            "Empty = invitation only."
        ),
    )

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
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

    email = models.EmailField(_("email address"), unique=True)
    name = models.CharField(pgettext_lazy("person", "name"), max_length=150, blank=True)
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="members",
        verbose_name=_("team"),
    )
    is_staff = models.BooleanField(
        _("staff status"),
        default=False,
        help_text=_("Designates whether the user can log into this admin site."),
    )
    is_active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_(
            "Designates whether this user should be treated as active. "
            "Unselect this instead of deleting accounts."
        ),
    )
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    uses_team_limits = models.BooleanField(
        _("uses team limits"),
        default=True,
        help_text=_("Use the team's member limits. Untick to give this person their own."),
    )
    is_team_admin = models.BooleanField(
        _("team admin"),
        default=False,
        help_text=_(
            "Sees the whole team's usage and spend, and receives the team's budget alerts."
        ),
    )
    # Empty: follow the browser (Accept-Language; the browser's time zone).
    language = models.CharField(_("language"), max_length=16, blank=True, default="")
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True, default="")

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]


class QuotaCounter(models.Model):
    """Running totals for one user and one period; admission is a conditional UPDATE.

    The ledger always sums to these counters (``manage.py ledger_check``).
    """

    DAY, MONTH, LIVE = "day", "month", "live"
    PERIODS = [(DAY, _("day")), (MONTH, _("month")), (LIVE, _("in progress"))]
    LIVE_START = dt.date(2000, 1, 1)  # the one "live" row per user counts jobs in progress

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="quota_counters",
        verbose_name=_("user"),
    )
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="quota_counters",
        verbose_name=_("team"),
    )
    period = models.CharField(_("period"), max_length=5, choices=PERIODS)
    period_start = models.DateField(_("period start"))
    images_reserved = models.IntegerField(_("images reserved"), default=0)
    images_used = models.IntegerField(_("images used"), default=0)
    micros_reserved = models.BigIntegerField(_("reserved (micro-USD)"), default=0)
    micros_spent = models.BigIntegerField(_("spent (micro-USD)"), default=0)

    class Meta:
        verbose_name = _("quota counter")
        verbose_name_plural = _("quota counters")
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


# Reasons workers write (generations.outcomes), read back in the reader's language.
CAPPED = re.compile(
    r"^charged the (?P<reserved>\S+) reserved; "
    r"the upstream's price for this image was (?P<cost>\S+)$"
)
NO_IMAGE = re.compile(r"^no image \((?P<kind>[\w ]+)\); reservation released$")


class LedgerEntry(models.Model):
    """Append-only record of every movement of money and image allowance.

    ``reserved_delta``/``spent_delta`` (micro-USD) and the image deltas sum, per
    user and quota day, to the :class:`QuotaCounter` rows.
    """

    RESERVE, SETTLE, RELEASE, GRANT, ADJUST = "reserve", "settle", "release", "grant", "adjust"
    # The stored value is the code; the label is what the admin shows (in English, the same).
    KINDS = [
        (RESERVE, _("reserve")),
        (SETTLE, _("settle")),
        (RELEASE, _("release")),
        (GRANT, _("grant")),
        (ADJUST, _("adjust")),
    ]

    created = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="ledger_entries",
        verbose_name=_("user"),
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("team")
    )
    generation = models.ForeignKey(
        "generations.Generation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_entries",
        verbose_name=_("generation"),
    )
    kind = models.CharField(_("kind"), max_length=8, choices=KINDS)
    quota_day = models.DateField(_("quota day"))
    reserved_delta = models.BigIntegerField(_("reserved Δ (micro-USD)"), default=0)
    spent_delta = models.BigIntegerField(_("spent Δ (micro-USD)"), default=0)
    images_reserved_delta = models.IntegerField(_("images reserved Δ"), default=0)
    images_used_delta = models.IntegerField(_("images used Δ"), default=0)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("actor"),
    )
    reason = models.CharField(_("reason"), max_length=300, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        constraints = [
            # A redelivered task can never reserve, settle or release a job twice.
            models.UniqueConstraint(
                fields=["generation", "kind"],
                name="one_entry_per_generation_and_kind",
                condition=Q(kind__in=["reserve", "settle", "release"]),
            ),
        ]

    def __str__(self) -> str:
        amount = format_usd(self.spent_delta or self.reserved_delta)
        return f"{self.get_kind_display()} {amount} {self.user}"

    PLAIN_KINDS = {
        RESERVE: _("Held while the image is made"),
        SETTLE: _("Charged"),
        RELEASE: _("Returned, nothing charged"),
        GRANT: _("Extra room granted"),
        ADJUST: _("Corrected by an admin"),
    }

    @property
    def plain_kind(self) -> str:
        return str(self.PLAIN_KINDS[self.kind])

    @property
    def plain_reason(self) -> str:
        """The reason in the reader's language. Workers write nanoweb's own reasons in
        English (the ledger is also read by scripts and the CSV): the settlement line is
        rebuilt from the entry's amounts, the other known sentences from their values;
        what an admin typed is shown as written."""
        reason = self.reason
        if self.kind == self.SETTLE and reason.startswith("charged ") and self.reserved_delta:
            values = {
                "charged": format_usd(self.spent_delta),
                "reserved": format_usd(-self.reserved_delta),
                "returned": format_usd(-self.reserved_delta - self.spent_delta),
            }
            if found := CAPPED.match(reason):
                return (
                    gettext(
                        "charged the %(reserved)s reserved; the upstream's price for this image "
                        "was %(cost)s"
                    )
                    % found.groupdict()
                )
            if -self.reserved_delta > self.spent_delta:
                return (
                    gettext("charged %(charged)s of %(reserved)s reserved; %(returned)s returned")
                    % values
                )
            return gettext("charged %(charged)s of %(reserved)s reserved") % values
        if found := NO_IMAGE.match(reason):
            return gettext("no image (%(kind)s); reservation released") % found.groupdict()
        return gettext(reason) if reason else ""

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
        verbose_name=_("user"),
    )
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budget_alerts",
        verbose_name=_("team"),
    )
    period_start = models.DateField(
        _("budget month"), help_text=_("First day of the budget month.")
    )
    threshold = models.PositiveSmallIntegerField(
        _("threshold"), help_text=_("Percent of the monthly budget.")
    )
    spent_micros = models.BigIntegerField(
        _("spent (micro-USD)"), help_text=_("Spent and reserved when the alert fired.")
    )
    budget_micros = models.BigIntegerField(
        _("budget (micro-USD)"), help_text=_("The monthly budget at that moment.")
    )
    created = models.DateTimeField(_("created"), default=timezone.now)
    emailed_at = models.DateTimeField(_("emailed at"), null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("budget alert")
        verbose_name_plural = _("budget alerts")
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
        """What the studio banner and the email say, in the active language."""
        values = {
            "team": self.team.name if self.team_id else "",
            "budget": format_left(self.budget_micros),
            "spent": format_usd(self.spent_micros, CENTS),
            "percent": self.spent_micros * 100 // self.budget_micros,
            # "December 1" in English
            "resets": date_format(next_month_start(self.period_start), "MONTH_DAY_FORMAT"),
        }
        if self.threshold >= 100:
            if self.user_id:
                text = gettext(
                    "Your monthly budget of %(budget)s is used up (%(spent)s charged). New "
                    "images are refused until it resets on %(resets)s, or an admin raises it."
                )
            else:
                text = gettext(
                    "Team %(team)s's shared monthly budget of %(budget)s is used up "
                    "(%(spent)s charged). New images are refused until it resets on "
                    "%(resets)s, or an admin raises it."
                )
        elif self.user_id:
            text = gettext(
                "Your monthly budget is %(percent)s %% used: %(spent)s of %(budget)s. "
                "It resets on %(resets)s."
            )
        else:
            text = gettext(
                "Team %(team)s's shared monthly budget is %(percent)s %% used: %(spent)s of "
                "%(budget)s. It resets on %(resets)s."
            )
        return text % values


class ApiToken(models.Model):
    """A named credential for the HTTP API; acts as its user, with the user's limits.

    Only an HMAC of the token is stored. ``prefix`` is the visible, unique start
    of the token (``nw_`` + a public id) used to find the row; the digest is then
    compared in constant time.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        verbose_name=_("user"),
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=32, unique=True)
    digest = models.CharField(_("digest"), max_length=64)
    created = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(_("last used from"), null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Invitation(models.Model):
    """An admin asks someone by email to join a team; the link in the email lets them set
    a password or sign in with the team's provider. Only a hash of the link is stored."""

    email = models.EmailField(_("email address"))
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="invitations", verbose_name=_("team")
    )
    is_team_admin = models.BooleanField(
        _("team admin"),
        default=False,
        help_text=_("Joins as a team admin (sees the team's usage and spend)."),
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("invited by"),
    )
    key_digest = models.CharField(_("link digest"), max_length=64, unique=True, editable=False)
    created = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    accepted_at = models.DateTimeField(_("accepted"), null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitation",
        verbose_name=_("accepted by"),
    )

    class Meta:
        ordering = ["-created"]
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")

    def __str__(self) -> str:
        return f"{self.email} → {self.team}"

    @property
    def is_usable(self) -> bool:
        return self.accepted_at is None and self.expires_at > timezone.now()
