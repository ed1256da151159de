from django.db import models


class Order(models.Model):
    state = models.CharField(max_length=20, default="paid")
    invoice_task = models.CharField(max_length=64, blank=True)


class Mailer(models.Model):
    """Whether the invoice mailer is up (the example's failing dependency)."""

    up = models.BooleanField(default=False)
