"""ASGI entry point (gunicorn with uvicorn workers): the API's waiting requests are
coroutines, so a long image does not hold a thread."""

import os
import warnings

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoweb.settings")
# Under ASGI each request's database work runs in a thread of its own, so a kept-open
# connection is never reused and they pile up until PostgreSQL refuses new clients.
# The web process closes each request's connection; workers keep theirs (CONN_MAX_AGE).
os.environ.setdefault("CONN_MAX_AGE", "0")
# Static files (whitenoise) and private images are served from files, which Django
# streams from a thread under ASGI; that is intended, not worth a warning per request.
warnings.filterwarnings(
    "ignore",
    message="StreamingHttpResponse must consume synchronous",
    module="django.core.handlers.asgi",
)
application = get_asgi_application()
