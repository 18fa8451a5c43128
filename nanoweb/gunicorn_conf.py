"""gunicorn settings for the web process: ``gunicorn -c nanoweb/gunicorn_conf.py``.

Used by the Procfile (``make run``), the Dockerfile, docker-compose.yml and
deploy/nanoweb-web.service; the bind address stays on each command line.

The access log leaves query strings out. Google's clients may send the API token as
``?key=nw_…`` (the Gemini-compatible routes accept it, as Google does), and a secret
must never reach a log. With uvicorn workers the lines come from uvicorn's access
logger, not from ``access_log_format``, so a filter on that logger cuts each path at
its ``?``; ``access_log_format`` says the same for gunicorn's own workers.
"""

import logging
import os

from uvicorn_worker import UvicornWorker

wsgi_app = "nanoweb.asgi:application"
worker_class = "nanoweb.gunicorn_conf.Worker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 60
accesslog = "-"
errorlog = "-"
# No gunicornc control socket: nanoweb does not use it, and its default path is one per
# user, so two instances (or a test run beside `make run`) on one machine would share it.
control_socket_disable = True
# gunicorn's default without the query string: %(U)s is the path alone (%(r)s and
# %(q)s would carry ?key=).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'


class WithoutQueryString(logging.Filter):
    """uvicorn's access line is ``'%s - "%s %s HTTP/%s" %d'`` with the path and query
    as its third argument: keep the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def post_worker_init(worker) -> None:
    logging.getLogger("uvicorn.access").addFilter(WithoutQueryString())


class Worker(UvicornWorker):
    """uvicorn, told that Django's ASGI handler does not speak the lifespan protocol (it
    otherwise tries, and logs "ASGI 'lifespan' protocol appears unsupported" at every
    start of every worker)."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "lifespan": "off"}
