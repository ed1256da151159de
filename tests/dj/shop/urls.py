from __future__ import annotations

from django.urls import include, path

from . import views

urlpatterns = [
    path("orders/", views.place_order),
    path("commandbus/", include("commandbus_django.urls")),
]
