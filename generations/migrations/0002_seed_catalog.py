from django.db import migrations


def seed(apps, schema_editor):
    from generations.catalog import seed_models

    seed_models(apps.get_model("generations", "ModelSpec"))


class Migration(migrations.Migration):
    dependencies = [("generations", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
