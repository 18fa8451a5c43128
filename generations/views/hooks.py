"""``POST /hooks/<kind>/<token>``: where fal.ai and Replicate call back (see webhooks.py)."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from generations import webhooks


@csrf_exempt  # signed by the provider instead; it has no session
@require_POST
def webhook(request, kind: str, token: str):
    length = request.headers.get("Content-Length") or "0"
    if not length.isdigit() or int(length) > webhooks.MAX_BODY_BYTES:
        return JsonResponse({"error": "Webhook body too large."}, status=413)
    received = webhooks.receive(kind, token, dict(request.headers), request.body)
    if received.status != 200:
        return JsonResponse({"error": received.message}, status=received.status)
    return JsonResponse({"ok": True, "woken": received.woken})
