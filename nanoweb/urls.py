from django.contrib import admin
from django.urls import include, path

from nanoweb import views

admin.site.site_header = "nanoweb admin"
admin.site.site_title = "nanoweb"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("", include("generations.urls")),
]
