"""The shop's tasks: plain django.tasks code (Django 6; the backport on Django 5.2)."""

import django

if django.VERSION >= (6,):
    from django.tasks import task
else:
    from django_tasks import task

from .models import Mailer, Order


@task
def ship(order_id):
    Order.objects.filter(pk=order_id).update(state="shipped")
    return {"shipped": order_id}


@task(max_attempts=1)  # straight to the troubleshooting queue on failure
def send_invoice(order_id):
    if not Mailer.objects.filter(up=True).exists():
        raise ConnectionError("the mailer is down")
    Order.objects.filter(pk=order_id).update(state="invoiced")
    return {"invoiced": order_id}
