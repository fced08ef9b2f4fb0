from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from optout.index import demo
from optout.models import Dataset


@require_GET
def demo_image(request, name: str):
    try:
        data = demo.image_bytes(name)
    except KeyError:
        raise Http404("no such demo image") from None
    response = HttpResponse(data, content_type="image/jpeg")
    response["Cache-Control"] = "public, max-age=86400"
    return response


@require_GET
def demo_index(request):
    dataset = Dataset.objects.filter(name=demo.DATASET_NAME).first()
    rows = dataset.rows.order_by("id") if dataset else []
    return render(request, "optout/demo.html", {"dataset": dataset, "rows": rows})
