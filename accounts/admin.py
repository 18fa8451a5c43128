from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounts import billing, invitations, limits, quotas
from accounts.forms import BillingForm, GrantForm, UsdField
from accounts.models import (
    Invitation,
    LedgerEntry,
    QuotaCounter,
    Team,
    User,
    default_monthly_budget,
    format_left,
    format_usd,
)
from accounts.periods import month_start, quota_day

LIMITS_HELP = _(
    "Empty means unlimited. Budgets are in US dollars. While “uses team limits” is "
    "ticked, the team's member limits apply instead of these."
)
LIMIT_FIELDS = [
    "daily_image_limit",
    "monthly_budget_micros",
    "max_concurrent_jobs",
    "max_image_size",
    "max_images_per_request",
    "max_reference_images",
    "allowed_models",
]


def _month_spend(**owner) -> Subquery:
    """This month's spending (settled, net of grants) for the row's user or team."""
    rows = QuotaCounter.objects.filter(
        period=QuotaCounter.MONTH, period_start=month_start(quota_day()), **owner
    )
    return Subquery(rows.values("micros_spent")[:1])


def _month_line(room: quotas.Room) -> str:
    """ "Left this month: $12.00 under team Design's shared monthly budget of $20.00"."""
    if room.left is None:
        return gettext("Left this month: unlimited")
    return gettext("Left this month: %(left)s under %(by)s of %(limit)s") % {
        "left": format_left(room.left),
        "by": room.by,
        "limit": format_left(room.limit),
    }


def _images(n: int) -> str:
    return ngettext("%(n)s image", "%(n)s images", n) % {"n": n}


def _today_line(room: quotas.Room) -> str:
    """ "Left today: 7 images under their own daily image limit of 10 images"."""
    if room.left is None:
        return gettext("Left today: unlimited")
    return gettext("Left today: %(left)s under %(by)s of %(limit)s") % {
        "left": _images(room.left),
        "by": room.by,
        "limit": _images(room.limit),
    }


def _limit(person, field: str, show) -> str:
    """A limit as it applies to ``person``: "unlimited" when empty, and marked "(team)"
    when it is their team's member limit rather than their own."""
    owner = limits.holder(person)
    value = getattr(owner, field)
    text = gettext("unlimited") if value is None else show(value)
    if owner is person:
        return text
    return format_html("{} <small>{}</small>", text, gettext("(team)"))


class UserCreation(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserChange(UserChangeForm):
    monthly_budget_micros = UsdField(label=_("Monthly budget (USD)"), required=False)

    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreation
    form = UserChange
    ordering = ["email"]
    # Six short columns fit beside the filters at 1280 px: the name goes under the email,
    # team admins are marked in the team column (both have filters).
    list_display = [
        "person",
        "team_and_role",
        "daily_images",
        "budget",
        "spent_this_month",
        "active",
    ]
    list_filter = ["is_staff", "is_active", "is_team_admin", "team"]
    search_fields = ["email", "name"]
    readonly_fields = ["money", "last_login", "date_joined"]
    filter_horizontal = ["groups", "user_permissions", "allowed_models"]
    fieldsets = [
        (None, {"fields": ["email", "password", "name", "team", "is_team_admin"]}),
        (
            _("Limits"),
            {"description": LIMITS_HELP, "fields": ["uses_team_limits", *LIMIT_FIELDS]},
        ),
        (_("This month"), {"fields": ["money"]}),
        (
            _("Permissions"),
            {
                "classes": ["collapse"],
                "fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"],
            },
        ),
        (_("Dates"), {"classes": ["collapse"], "fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "password1", "password2", "team"]})
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("team")
            .annotate(month_spent=_month_spend(user=OuterRef("pk")))
        )

    @admin.display(description=_("Person"), ordering="email")
    def person(self, obj):
        if not obj.name:
            return obj.email
        return format_html('{}<br><span class="quiet">{}</span>', obj.email, obj.name)

    @admin.display(description=_("Team"), ordering="team__name")
    def team_and_role(self, obj):
        if obj.team_id is None:
            return "—"
        if obj.is_team_admin:
            return format_html("{} <small>{}</small>", obj.team, gettext("(admin)"))
        return str(obj.team)

    @admin.display(description=_("Images / day"))
    def daily_images(self, obj):
        return _limit(obj, "daily_image_limit", str)

    @admin.display(description=_("Budget / month"))
    def budget(self, obj):
        return _limit(obj, "monthly_budget_micros", format_left)

    @admin.display(description=_("Spent this month"), ordering="month_spent")
    def spent_this_month(self, obj):
        return format_usd(getattr(obj, "month_spent", None) or 0)

    @admin.display(description=_("Active"), boolean=True, ordering="is_active")
    def active(self, obj):
        return obj.is_active

    @admin.display(description=_("Spend and room"))
    def money(self, obj):
        if obj.pk is None:
            return "—"
        s = quotas.summary(obj)
        spent = gettext(
            "%(spent)s spent and %(held)s in progress this month · %(images)s images today"
        ) % {
            "spent": format_usd(s.spent_month),
            "held": format_usd(s.reserved_month),
            "images": s.images_today,
        }
        return format_html(
            '{}<br>{}<br>{}<br><a href="{}">{}</a> · <a href="{}">{}</a>',
            spent,
            _month_line(s.budget_room),
            _today_line(s.images_room),
            reverse("admin:accounts_user_grant", args=[obj.pk]),
            gettext("Grant or adjust…"),
            reverse("admin:accounts_ledgerentry_changelist") + f"?user__id__exact={obj.pk}",
            gettext("Ledger"),
        )

    def get_urls(self):
        grant = self.admin_site.admin_view(self.grant_view)
        return [path("<int:pk>/grant/", grant, name="accounts_user_grant"), *super().get_urls()]

    def grant_view(self, request, pk):
        if not self.has_change_permission(request):
            return HttpResponse(gettext("You may not change people's money."), status=403)
        person = get_object_or_404(User, pk=pk)
        form = GrantForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            move = quotas.grant if data["kind"] == GrantForm.GRANT else quotas.adjust
            try:
                entry = move(
                    person,
                    micros=data["amount"],
                    images=data["images"],
                    actor=request.user,
                    reason=data["reason"],
                )
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                if entry.kind == LedgerEntry.GRANT:
                    done = gettext("Grant recorded for %(person)s: %(amount)s, %(images)s.")
                else:
                    done = gettext("Adjustment recorded for %(person)s: %(amount)s, %(images)s.")
                values = {
                    "person": person,
                    "amount": format_usd(data["amount"]),
                    "images": _images(data["images"]),
                }
                self.message_user(request, done % values, messages.SUCCESS)
                return redirect("admin:accounts_user_change", person.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "form": form,
            "person": person,
            "summary": quotas.summary(person),
            "title": gettext("Grant or adjust — %(person)s") % {"person": person},
        }
        return TemplateResponse(request, "admin/accounts/user/grant.html", context)


class TeamForm(forms.ModelForm):
    # Prefilled on Add team like the other member limits (a declared field does not
    # take the model field's default by itself).
    monthly_budget_micros = UsdField(
        label=_("Member monthly budget (USD)"), required=False, initial=default_monthly_budget
    )
    shared_monthly_budget_micros = UsdField(label=_("Shared team budget (USD)"), required=False)

    class Meta:
        model = Team
        fields = [
            "name",
            "sign_in_domain",
            "shared_daily_image_limit",
            "shared_monthly_budget_micros",
            *LIMIT_FIELDS,
        ]


class MemberInline(admin.TabularInline):
    model = User
    fk_name = "team"
    fields = ["email", "name", "is_team_admin", "uses_team_limits", "is_active"]
    readonly_fields = ["email", "name", "is_active"]
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name = _("member")
    verbose_name_plural = _("members")

    def has_add_permission(self, request, obj=None):
        return False  # people are created on the user page, then given a team


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamForm
    list_display = ["name", "members_count", "shared_budget", "spent_this_month", "created"]
    search_fields = ["name"]
    filter_horizontal = ["allowed_models"]
    inlines = [MemberInline]
    fieldsets = [
        (None, {"fields": ["name", "sign_in_domain"]}),
        (
            _("Shared by the whole team"),
            {
                "description": _(
                    "Totals for all members together, checked with each member's own "
                    "limits in the same admission. Empty means unlimited."
                ),
                "fields": ["shared_daily_image_limit", "shared_monthly_budget_micros"],
            },
        ),
        (
            _("Member limits"),
            {
                "description": _(
                    "Apply to members who use the team's limits. Empty means unlimited."
                ),
                "fields": LIMIT_FIELDS,
            },
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(month_spent=_month_spend(team=OuterRef("pk")), n_members=Count("members"))
        )

    @admin.display(description=_("Members"), ordering="n_members")
    def members_count(self, obj):
        return obj.n_members

    @admin.display(description=_("Shared budget"))
    def shared_budget(self, obj):
        return format_left(obj.shared_monthly_budget_micros)

    @admin.display(description=_("Spent this month"), ordering="month_spent")
    def spent_this_month(self, obj):
        return format_usd(obj.month_spent or 0)


class InvitationForm(forms.ModelForm):
    class Meta:
        model = Invitation
        fields = ["email", "team", "is_team_admin"]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email, team__isnull=False).exists():
            raise forms.ValidationError(gettext("This person already has an account in a team."))
        return email


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invite someone by email: saving sends the link (and shows it here, for when
    email is not set up). Only a hash of the link is stored."""

    form = InvitationForm
    list_display = ["email", "team", "invited_by", "created", "expires_at", "state"]
    list_filter = ["team"]
    search_fields = ["email"]
    actions = ["send_again"]

    def has_change_permission(self, request, obj=None):
        return False  # an invitation is sent, not edited; send again for a new link

    @admin.display(description=_("State"))
    def state(self, obj):
        if obj.accepted_at:
            return gettext("joined %(day)s") % {"day": f"{obj.accepted_at:%Y-%m-%d}"}
        return gettext("waiting") if obj.is_usable else gettext("expired")

    def save_model(self, request, obj, form, change):
        obj.invited_by = request.user
        url = invitations.issue(obj, request.build_absolute_uri("/"))
        # The admin saves inside a transaction: the mail goes once the row is committed.
        transaction.on_commit(lambda: invitations.send(obj, url))
        messages.info(request, format_html(gettext("Sent to {}. The link: {}"), obj.email, url))

    @admin.action(description=_("Send again with a new link"))
    def send_again(self, request, queryset):
        for invitation in queryset.filter(accepted_at__isnull=True):
            url = invitations.issue(invitation, request.build_absolute_uri("/"))
            invitations.send(invitation, url)
            messages.info(
                request, format_html(gettext("Sent to {}. The link: {}"), invitation.email, url)
            )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money is moved only by accounts/quotas.py; the admin shows, never edits."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "created",
        "user",
        "team",
        "kind",
        "reserved",
        "spent",
        "images_used_delta",
        "job",
        "actor",
        "reason",
    ]
    list_filter = ["kind", "quota_day", "team", ("user", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user", "team", "actor", "generation"]
    search_fields = ["user__email", "reason"]
    date_hierarchy = "quota_day"

    @admin.display(description=_("Reserved Δ"))
    def reserved(self, obj):
        return format_usd(obj.reserved_delta)

    @admin.display(description=_("Spent Δ"))
    def spent(self, obj):
        return format_usd(obj.spent_delta)

    @admin.display(description=_("Generation"))
    def job(self, obj):
        if obj.generation_id is None:
            return "—"
        url = reverse("admin:generations_generation_change", args=[obj.generation_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.generation)[:40])

    def get_urls(self):
        report = self.admin_site.admin_view(self.billing_view)
        return [path("billing/", report, name="accounts_billing"), *super().get_urls()]

    def billing_view(self, request):
        # What the page was not given is this month's default, as on first load, so the
        # CSV link exports exactly the report the page shows.
        form = BillingForm({**BillingForm.initial_range(), **request.GET.dict()})
        report = net = None
        csv_query = ""
        if form.is_valid():
            d = form.cleaned_data
            csv_query = urlencode({k: d[k] for k in ("start", "end", "group", "period")})
            report = billing.build(d["start"], d["end"], group=d["group"], period=d["period"])
            net = billing.ledger_net(d["start"], d["end"])
            if request.GET.get("format") == "csv":
                response = HttpResponse(
                    billing.to_csv(report), content_type="text/csv; charset=utf-8"
                )
                name = f"nanoweb-billing-{d['start']}-{d['end']}-{d['group']}.csv"
                response["Content-Disposition"] = f'attachment; filename="{name}"'
                return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "form": form,
            "report": report,
            "ledger_net": net,
            "title": gettext("Billing report"),
            "no_team_note": billing.NO_TEAM_NOTE,
            "csv_query": csv_query,
        }
        status = 200 if form.is_valid() else 400
        return TemplateResponse(request, "admin/accounts/billing.html", context, status=status)


@admin.register(QuotaCounter)
class QuotaCounterAdmin(ReadOnlyAdmin):
    list_display = [
        "owner",
        "period",
        "period_start",
        "images_used",
        "images_reserved",
        "spent",
        "reserved",
    ]
    list_filter = ["period", "team"]
    list_select_related = ["user", "team"]
    search_fields = ["user__email", "team__name"]

    @admin.display(description=_("User or team"))
    def owner(self, obj):
        return obj.user or obj.team

    @admin.display(description=_("Spent"))
    def spent(self, obj):
        return format_usd(obj.micros_spent)

    @admin.display(description=_("Reserved"))
    def reserved(self, obj):
        return format_usd(obj.micros_reserved)
