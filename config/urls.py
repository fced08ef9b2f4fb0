from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config.admin import staff_login
from config.metrics import metrics
from config.views import healthz

admin.site.site_header = "Opt-out review"
admin.site.site_title = "Opt-out review"

urlpatterns = [
    path("", include("requests_app.urls")),
    path("", include("optout.urls")),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # Ahead of the admin's own login URL: the same page, rate-limited (config/admin.py).
    path(f"{settings.ADMIN_PATH}login/", staff_login, name="staff-login"),
    path(settings.ADMIN_PATH, admin.site.urls),
]
