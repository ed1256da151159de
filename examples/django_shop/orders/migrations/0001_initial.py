from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("state", models.CharField(default="paid", max_length=20)),
                ("invoice_task", models.CharField(blank=True, max_length=64)),
            ],
        ),
        migrations.CreateModel(
            name="Mailer",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("up", models.BooleanField(default=False)),
            ],
        ),
    ]
