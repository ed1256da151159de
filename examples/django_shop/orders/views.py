from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt

from .models import Order
from .tasks import send_invoice, ship


@csrf_exempt  # an API for the example's client; a form would carry Django's CSRF token
def place_order(request):
    """POST: create an order, enqueue its shipping and invoice in the same transaction.
    ?fail=1 fails the request after enqueueing: nothing of it remains."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    try:
        with transaction.atomic():
            order = Order.objects.create()
            shipping = ship.enqueue(order.pk)
            order.invoice_task = send_invoice.enqueue(order.pk).id
            order.save()
            if request.GET.get("fail"):
                raise RuntimeError("payment declined")
    except RuntimeError:
        return JsonResponse({"error": "payment declined"}, status=402)
    return JsonResponse(
        {"order": order.pk, "ship": shipping.id, "invoice": order.invoice_task}, status=201
    )


def order(request, pk):
    found = get_object_or_404(Order, pk=pk)
    invoice = send_invoice.get_result(found.invoice_task)
    return JsonResponse({"order": pk, "state": found.state, "invoice": invoice.status})
