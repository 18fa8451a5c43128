from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from accounts.models import LedgerEntry, QuotaCounter, Team, User, format_usd


class UserCreation(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserChange(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreation
    form = UserChange
    ordering = ["email"]
    list_display = ["email", "name", "team", "daily_image_limit", "budget", "is_staff", "is_active"]
    list_filter = ["is_staff", "is_active", "team"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password", "name", "team"]}),
        ("Limits", {"fields": ["daily_image_limit", "monthly_budget_micros"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups",
                                    "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"],
                             "fields": ["email", "password1", "password2", "team"]})]

    @admin.display(description="Monthly budget")
    def budget(self, obj):
        return format_usd(obj.monthly_budget_micros)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "created"]
    search_fields = ["name"]


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
    list_display = ["created", "user", "kind", "reserved", "spent", "images_used_delta",
                    "generation", "reason"]
    list_filter = ["kind", "quota_day"]
    search_fields = ["user__email", "reason"]
    date_hierarchy = "created"

    @admin.display(description="Reserved Δ")
    def reserved(self, obj):
        return format_usd(obj.reserved_delta)

    @admin.display(description="Spent Δ")
    def spent(self, obj):
        return format_usd(obj.spent_delta)


@admin.register(QuotaCounter)
class QuotaCounterAdmin(ReadOnlyAdmin):
    list_display = ["user", "period", "period_start", "images_used", "images_reserved",
                    "spent", "reserved"]
    list_filter = ["period"]
    search_fields = ["user__email"]

    @admin.display(description="Spent")
    def spent(self, obj):
        return format_usd(obj.micros_spent)

    @admin.display(description="Reserved")
    def reserved(self, obj):
        return format_usd(obj.micros_reserved)
