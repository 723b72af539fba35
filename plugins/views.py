from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from plugins.metrics.exposition import render_metrics


@csrf_exempt  # a POST is a 405, not a CSRF failure: nothing here writes
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape endpoint."""
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
