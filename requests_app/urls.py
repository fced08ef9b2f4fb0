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
    path("requests/links/", views.add_links, name="add-links"),
    path("requests/appeal/", views.appeal, name="appeal"),
    path("requests/monitoring/", views.monitor, name="monitor"),
    path("api/v1/requests/", api.CreateRemovalView.as_view(), name="api-create"),
    path("api/v1/requests/status/", api.RemovalStatusView.as_view(), name="api-status"),
    path("api/v1/requests/withdraw/", api.WithdrawRemovalView.as_view(), name="api-withdraw"),
    path("api/v1/requests/links/", api.AddLinksView.as_view(), name="api-add-links"),
    path("api/v1/requests/appeal/", api.AppealView.as_view(), name="api-appeal"),
    path("api/v1/requests/monitoring/", api.MonitorView.as_view(), name="api-monitor"),
]
