from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy


def _page(view, title: str, **kwargs):
    return view.as_view(
        template_name="accounts/auth_page.html", extra_context={"title": title}, **kwargs
    )


urlpatterns = [
    path(
        "login/",
        _page(auth_views.LoginView, "Sign in", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/change/",
        _page(auth_views.PasswordChangeView, "Change password"),
        name="password_change",
    ),
    path(
        "password/change/done/",
        _page(auth_views.PasswordChangeDoneView, "Password changed"),
        name="password_change_done",
    ),
    path(
        "password/reset/",
        _page(
            auth_views.PasswordResetView,
            "Reset your password",
            email_template_name="accounts/password_reset_email.txt",
            subject_template_name="accounts/password_reset_subject.txt",
        ),
        name="password_reset",
    ),
    path(
        "password/reset/sent/",
        _page(auth_views.PasswordResetDoneView, "Check your email"),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        _page(
            auth_views.PasswordResetConfirmView,
            "Choose a new password",
            success_url=reverse_lazy("password_reset_complete"),
        ),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/complete/",
        _page(auth_views.PasswordResetCompleteView, "Password reset"),
        name="password_reset_complete",
    ),
]
