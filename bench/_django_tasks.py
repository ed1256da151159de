"""The no-op task of bench/bench_django.py, once per backend."""

from django_tasks import task


@task(backend="default")
def cb_noop() -> None:
    return None


@task(backend="db")
def db_noop() -> None:
    return None
