from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = _("Generations")
