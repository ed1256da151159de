"""``path("commandbus/", include("commandbus_django.urls"))``: the operator console
under Django's sign-in (see :mod:`commandbus_django.console`)."""

from __future__ import annotations

from django.urls import re_path

from commandbus_django.console import console_view

app_name = "commandbus"
urlpatterns = [re_path(r"^(?P<subpath>.*)$", console_view, name="console")]
