"""Webhooks from queue-style upstreams: believe them only when signed, and only wake.

``POST /hooks/<kind>/<token>``: the token (random, per provider, in the URL the
provider was given at submit) finds the provider; the provider kind's own scheme
checks the signature and the timestamp (Replicate: Standard Webhooks, HMAC-SHA256
with the account's signing secret; fal.ai: Ed25519 against its published keys; see
each provider module). A delivery seen before is a replay and is refused. A believed
delivery only wakes the job waiting on that upstream request: the job's next poll
fetches the result itself, so a forged or garbled body can never become an image or
a charge. Polling stays the fallback for deliveries that never arrive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from generations import polling
from generations.crypto import KeyDecryptionError
from generations.models import Provider, WebhookDelivery
from generations.providers.base import WebhookRejected, provider_class
from generations.providers.webhooks import TOLERANCE_SECONDS

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # a finished prediction with its input echoed back; images are URLs


@dataclass(frozen=True)
class Received:
    status: int  # the HTTP answer: 200 believed, 401 not signed right, 404, 409 replay
    message: str
    woken: int = 0


def receive(kind: str, token: str, headers: dict[str, str], body: bytes) -> Received:
    """Check one delivery and wake its job (see the module)."""
    provider = _provider(kind, token)
    if provider is None:
        return Received(404, "No such webhook.")
    if len(body) > MAX_BODY_BYTES:
        return Received(413, "Webhook body too large.")
    try:
        event = provider_class(provider.kind).verify_webhook(
            {name.lower(): value for name, value in headers.items()},
            body,
            secret=provider.webhook_secret(),
            keys_url=provider.webhook_keys_url,
            now=time.time(),
        )
    except (WebhookRejected, KeyDecryptionError) as exc:
        log.warning("webhook for %s refused: %s", provider, exc)
        return Received(401, "Webhook signature not valid.")
    try:
        with transaction.atomic():
            WebhookDelivery.objects.create(
                provider=provider,
                delivery_id=event.delivery_id[:200],
                upstream_id=event.upstream_id[:200],
            )
            woken = polling.wake(provider, event.upstream_id)
    except IntegrityError:
        return Received(409, "Webhook already received.")
    return Received(200, "ok", woken)


def prune(now=None) -> int:
    """Deliveries older than any timestamp still believed can no longer be replayed."""
    now = now or timezone.now()
    keep = timedelta(seconds=2 * TOLERANCE_SECONDS + 3600)
    deleted, _ = WebhookDelivery.objects.filter(received__lt=now - keep).delete()
    return deleted


def _provider(kind: str, token: str) -> Provider | None:
    if kind not in Provider.WEBHOOK_KINDS or not token:
        return None
    provider = Provider.objects.filter(kind=kind, webhooks=True, webhook_token=token).first()
    # The lookup found it by token already; the compare keeps the check constant-time
    # should a database compare strings case-insensitively.
    if provider is None or not constant_time_compare(provider.webhook_token, token):
        return None
    return provider
