from django.contrib import admin
from django.urls import include, path

from accounts.views import usage_page
from nanoweb import views

admin.site.site_header = "nanoweb admin"
admin.site.site_title = "nanoweb"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("usage", usage_page, name="usage"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("", include("generations.urls")),
]
