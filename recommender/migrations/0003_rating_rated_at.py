import django.utils.timezone
from django.db import migrations, models


def rated_when_last_written(apps, schema_editor):
    """Existing scores were given when they were last written: the best time there is for them."""
    Rating = apps.get_model("recommender", "Rating")
    Rating.objects.update(rated_at=models.F("updated_at"))


class Migration(migrations.Migration):

    dependencies = [
        ("recommender", "0002_admin_evaluation_runs"),
    ]

    operations = [
        migrations.AddField(
            model_name="rating",
            name="rated_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.RunPython(rated_when_last_written, migrations.RunPython.noop),
    ]
