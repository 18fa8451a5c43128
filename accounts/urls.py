"""Sign-in, sign-out, password reset and change, two-step sign-in and providers are
django-allauth's (``/accounts/login/`` …); invitations are nanoweb's own."""

from django.urls import include, path

from accounts.views import invitation, preferences_page

urlpatterns = [
    path("invitation/<str:key>/", invitation, name="invitation"),
    path("preferences/", preferences_page, name="preferences"),
    path("", include("allauth.urls")),
]
