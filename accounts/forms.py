"""Forms: the admin's (money is typed in US dollars and stored as integer micro-USD)
and accepting an invitation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts import preferences
from accounts.models import MICROS_PER_USD, User, usd_to_micros
from accounts.periods import month_start, quota_day


def micros_to_usd_text(micros: int) -> str:
    """How a stored amount is typed back: ``20.00``, ``0.134``, ``0.000001``."""
    usd = Decimal(micros) / MICROS_PER_USD
    return f"{usd:.6f}".rstrip("0").rstrip(".") if usd % 1 else f"{usd:.2f}"


def checked_micros(usd: Decimal, *, allow_negative: bool = False) -> int:
    """``usd`` as integer micro-USD, exactly, or a ValidationError with a code
    (``invalid``, ``negative``, ``precision``, ``too_large``) callers may reword."""
    if not usd.is_finite():
        raise ValidationError(_("Enter a finite amount in US dollars."), code="invalid")
    if usd < 0 and not allow_negative:
        raise ValidationError(_("A budget or price cannot be negative."), code="negative")
    if usd != usd.quantize(Decimal("0.000001")):
        raise ValidationError(_("Use at most six decimals (one micro-dollar)."), code="precision")
    if abs(usd) > 10**9:
        raise ValidationError(_("That amount is too large."), code="too_large")
    return usd_to_micros(usd)


class UsdField(forms.CharField):
    """A dollar amount in the form, micro-USD in ``cleaned_data``.

    Accepts ``20``, ``20.5``, ``$1,250.00`` and up to six decimals (one micro-dollar).
    Empty is ``None``: "unlimited" for a limit (the default placeholder); a price
    field says what empty means with its own ``placeholder``.
    """

    def __init__(
        self, *, allow_negative: bool = False, placeholder: str | None = None, **kwargs
    ) -> None:
        self.allow_negative = allow_negative
        if placeholder is None:
            placeholder = _("unlimited")
        kwargs.setdefault(
            "widget", forms.TextInput(attrs={"inputmode": "decimal", "placeholder": placeholder})
        )
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return micros_to_usd_text(value)
        return value

    def to_python(self, value) -> int | None:
        text = (super().to_python(value) or "").strip().replace(",", "").removeprefix("$")
        if not text:
            return None
        try:
            usd = Decimal(text)
        except InvalidOperation:
            raise ValidationError(
                _("“%(value)s” is not an amount in US dollars, e.g. 20 or 12.50."),
                code="invalid",
                params={"value": value},
            ) from None
        return checked_micros(usd, allow_negative=self.allow_negative)


class GrantForm(forms.Form):
    """Give or correct a person's room this month; recorded in the ledger with a reason."""

    GRANT, ADJUST = "grant", "adjust"
    kind = forms.ChoiceField(
        label=_("Kind"),
        choices=[
            (GRANT, _("Grant extra room (budget and/or images)")),
            (ADJUST, _("Adjust what was spent (positive charges, negative refunds)")),
        ],
        widget=forms.RadioSelect,
        initial=GRANT,
    )
    amount = UsdField(label=_("Amount (USD)"), required=False, allow_negative=True, placeholder="0")
    images = forms.IntegerField(
        label=_("Images today"), required=False, initial=0, min_value=-10_000, max_value=10_000
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=300,
        help_text=_("Kept in the ledger, shown to the person."),
    )

    def clean(self):
        data = super().clean()
        micros, images = data.get("amount") or 0, data.get("images") or 0
        if not micros and not images and not self.errors:
            raise ValidationError(_("Enter an amount, a number of images, or both."))
        if data.get("kind") == self.GRANT and (micros < 0 or images < 0):
            raise ValidationError(
                _(
                    "A grant gives room: use positive numbers, or choose “Adjust” to refund "
                    "or charge."
                )
            )
        data["amount"], data["images"] = micros, images
        return data


class BillingForm(forms.Form):
    """The billing report's range (quota days, inclusive) and grouping."""

    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))
    group = forms.ChoiceField(
        label=_("Group"),
        choices=[("user", _("Person")), ("team", _("Team")), ("model", _("Model"))],
        initial="user",
    )
    period = forms.ChoiceField(
        label=_("Period"), choices=[("month", _("Month")), ("day", _("Day"))], initial="month"
    )

    MAX_DAYS = 3 * 366

    @classmethod
    def initial_range(cls) -> dict:
        today = quota_day()
        return {"start": month_start(today), "end": today, "group": "user", "period": "month"}

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                raise ValidationError(_("The end date is before the start date."))
            if end - start > dt.timedelta(days=self.MAX_DAYS):
                raise ValidationError(_("Choose a range of at most three years."))
        return data


class InvitationForm(forms.Form):
    """Accepting an invitation with a password (the address is the invitation's)."""

    name = forms.CharField(label=_("Your name"), max_length=150, required=False)
    password1 = forms.CharField(
        label=_("Choose a password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("The password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        data = super().clean()
        first, second = data.get("password1"), data.get("password2")
        if first and second and first != second:
            self.add_error("password2", _("The two passwords differ."))
        elif first:
            try:
                validate_password(first, User(email=self.email, name=data.get("name", "")))
            except ValidationError as exc:
                self.add_error("password1", exc)
        return data


class PreferencesForm(forms.ModelForm):
    """Language and time zone; empty follows the browser."""

    class Meta:
        model = User
        fields = ["language", "time_zone"]
        labels = {"language": _("Language"), "time_zone": _("Time zone")}

    def __init__(self, *args, browser_zone: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["language"].widget = forms.Select(
            choices=[("", _("The browser's language")), *preferences.languages().items()]
        )
        follow = _("The browser's time zone")
        if browser_zone:
            follow = _("The browser's time zone (%(zone)s)") % {"zone": browser_zone}
        zones = sorted(preferences.time_zones())
        self.fields["time_zone"].widget = forms.Select(
            choices=[("", follow), *((z, z.replace("_", " ")) for z in zones)]
        )

    def clean_language(self):
        value = self.cleaned_data["language"]
        if value and value not in preferences.languages():
            raise ValidationError(_("Choose one of the languages listed."))
        return value

    def clean_time_zone(self):
        value = self.cleaned_data["time_zone"]
        if value and not preferences.valid_zone(value):
            raise ValidationError(_("Choose one of the time zones listed."))
        return value
