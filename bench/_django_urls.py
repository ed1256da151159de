"""Views of bench/bench_django.py: each enqueues one no-op task in a transaction."""

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path

from _django_tasks import cb_noop, db_noop


def enqueue_commandbus(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        cb_noop.enqueue()
    return HttpResponse(status=201)


def enqueue_django_tasks_db(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        db_noop.enqueue()
    return HttpResponse(status=201)


urlpatterns = [
    path("commandbus/", enqueue_commandbus),
    path("django-tasks-db/", enqueue_django_tasks_db),
]
