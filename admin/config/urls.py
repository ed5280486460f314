from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from config import views

urlpatterns = [
    # Answered by config.views.HealthCheckMiddleware; routed too, so they have names.
    path("health", views.health, name="health"),
    path("health/ready", views.ready, name="ready"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
