from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from .models import Order
from .tasks import ship


def place_order(request: HttpRequest) -> HttpResponse:
    """Creates an order and enqueues its shipping in one transaction; ?fail=1 rolls both
    back after the enqueue."""
    try:
        with transaction.atomic():
            order = Order.objects.create()
            result = ship.enqueue(order.pk)
            if request.GET.get("fail"):
                raise RuntimeError("payment declined")
    except RuntimeError:
        return JsonResponse({"error": "declined"}, status=402)
    return JsonResponse({"order": order.pk, "task": result.id}, status=201)
