from django.contrib import admin
from django.urls import include, path
from orders import views

urlpatterns = [
    path("orders/", views.place_order),
    path("orders/<int:pk>/", views.order),
    path("admin/", admin.site.urls),
    # The operator console; staff read it, users with commandbus.operate_console act.
    path("commandbus/", include("commandbus_django.urls")),
]
