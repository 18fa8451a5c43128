from django.db import migrations


def seed(apps, schema_editor):
    from generations.catalog import MODELS, model_fields

    ModelSpec = apps.get_model("generations", "ModelSpec")
    for spec in MODELS:
        ModelSpec.objects.update_or_create(slug=spec["slug"], defaults=model_fields(spec))


class Migration(migrations.Migration):
    dependencies = [("generations", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
