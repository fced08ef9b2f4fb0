from django.urls import path

from optout import views
from optout.feed import api, index
from optout.feed import views as feed

app_name = "optout"

urlpatterns = [
    path("demo/", views.demo_index, name="demo"),
    path("demo/images/<slug:name>.jpg", views.demo_image, name="demo-image"),
    path("feed/v1/public/", index.public_index, name="feed-public-index"),
    path("feed/v1/partner/", index.partner_index, name="feed-partner-index"),
    path("feed/v1/public/<str:name>", feed.public_file, name="feed-public"),
    path("feed/v1/partner/<str:name>", feed.partner_file, name="feed-partner"),
    path(".well-known/optout/minisign.pub", feed.public_key, name="public-key"),
    path("api/v1/blocklist/lookup/", api.BlocklistLookupView.as_view(), name="api-lookup"),
]
