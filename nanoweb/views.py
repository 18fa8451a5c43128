from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static


def favicon(request):
    """Browsers ask for /favicon.ico on pages that link no icon (and some ask anyway)."""
    return redirect(static("img/favicon.svg"))  # not permanent: the hashed name changes


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return JsonResponse({"status": "unavailable", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok"})
