from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from accounts.views import usage_page
from generations.views.advisor import team_advice
from generations.views.api_tokens import api_page, revoke_token
from nanoweb import views

admin.site.site_header = _("nanoweb admin")
admin.site.site_title = "nanoweb"
# The admin signs in through the same (throttled, two-step) form as everyone else.
admin.site.login = secure_admin_login(admin.site.login)

urlpatterns = [
    path("favicon.ico", views.favicon),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("usage", usage_page, name="usage"),
    path("usage/advice", team_advice, name="usage-advice"),
    path("settings/api", api_page, name="api-settings"),
    path("settings/api/tokens/<int:pk>/revoke", revoke_token, name="revoke-token"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # The studio first: the API's URL list ends with django-ninja's own root ("").
    path("", include("generations.urls")),
    path("", include("generations.api.urls")),
]
