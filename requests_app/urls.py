from django.urls import path

from requests_app import api, views

app_name = "requests_app"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("transparency/", views.transparency_report, name="transparency"),
    path("requests/new/", views.new_request, name="new"),
    path("requests/receipt/", views.receipt, name="receipt"),
    path("requests/status/", views.status, name="status"),
    path("requests/withdraw/", views.withdraw, name="withdraw"),
    path("api/v1/requests/", api.CreateRemovalView.as_view(), name="api-create"),
    path("api/v1/requests/status/", api.RemovalStatusView.as_view(), name="api-status"),
    path("api/v1/requests/withdraw/", api.WithdrawRemovalView.as_view(), name="api-withdraw"),
]
