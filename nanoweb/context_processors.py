from django.conf import settings

# Backends that keep mail on this machine (the console is `make run`'s default): a
# message "sent" through them never reaches the person.
MAIL_STAYS_HERE = (
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
)


def mail_can_leave() -> bool:
    return settings.EMAIL_BACKEND not in MAIL_STAYS_HERE


def nanoweb(request):
    return {
        "max_prompt_chars": settings.NANOWEB_MAX_PROMPT_CHARS,
        "OPEN_SIGNUP": settings.NANOWEB_OPEN_SIGNUP,
        "MAIL_CAN_LEAVE": mail_can_leave(),
    }
