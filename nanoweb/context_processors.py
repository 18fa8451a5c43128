from django.conf import settings


def nanoweb(request):
    return {
        "max_prompt_chars": settings.NANOWEB_MAX_PROMPT_CHARS,
        "OPEN_SIGNUP": settings.NANOWEB_OPEN_SIGNUP,
    }
