from django.urls import path

from optout import views

app_name = "optout"

urlpatterns = [
    path("demo/", views.demo_index, name="demo"),
    path("demo/images/<slug:name>.jpg", views.demo_image, name="demo-image"),
]
