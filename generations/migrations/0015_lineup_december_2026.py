"""The December 2026 lineup: seed the new models and lifecycle data, and move routes that
name an upstream id Google shut down to its replacement, telling the admins what moved.

A visible change at upgrade time (a notice on the admin index), never a remap at
request time.
"""

from django.db import migrations
from django.utils import timezone

from generations.catalog import SHUT_DOWN_IDS, seed_models


def forwards(apps, schema_editor):
    ModelSpec = apps.get_model("generations", "ModelSpec")
    Route = apps.get_model("generations", "Route")
    Notice = apps.get_model("generations", "Notice")
    seed_models(ModelSpec)
    now = timezone.now()
    lines = []
    for old, (new, shut) in SHUT_DOWN_IDS.items():
        for route in Route.objects.filter(upstream_model=old).select_related("model", "provider"):
            where = f"{route.model.name} via {route.provider.name}"
            taken = Route.objects.filter(
                model=route.model, provider=route.provider, upstream_model=new
            ).exists()
            if taken:
                route.enabled = False
                route.retired_at = now
                route.retired_reason = (f"{old} was shut down on {shut:%Y-%m-%d}; the route "
                                        f"for {new} serves instead.")
                route.save(update_fields=["enabled", "retired_at", "retired_reason"])
                lines.append(f"{where}: {old} retired (a route for {new} already existed).")
            else:
                route.upstream_model = new
                route.save(update_fields=["upstream_model"])
                lines.append(f"{where}: {old} → {new}.")
    if lines:
        Notice.objects.create(
            title="Routes moved from shut-down model ids",
            message="Google shut down the preview ids below on 2026-06-25; this upgrade moved "
            "each route to the model that replaced it. Prices were kept as they were: check "
            "them on each route.\n\n" + "\n".join(lines),
        )


class Migration(migrations.Migration):
    dependencies = [("generations", "0014_model_lifecycle")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
