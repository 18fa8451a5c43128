from django.apps import AppConfig

from nanoweb import checks  # noqa: F401  (registers the system checks)


class NanowebConfig(AppConfig):
    name = "nanoweb"
