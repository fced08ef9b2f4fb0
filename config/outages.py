"""Passing outages of the services behind the site: PostgreSQL, and Redis (cache and broker).

While one of them restarts, a request that needs it gets a clear 503 with ``Retry-After``,
never a 500: the client may try again, and nothing it was told succeeded is lost, because
a request is only acknowledged (201) after PostgreSQL committed it. Tasks retry on the same
errors (requests_app/tasks.py). ``/healthz`` says 503 for as long as the outage lasts.
"""

import logging

import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from kombu.exceptions import OperationalError as BrokerError

log = logging.getLogger(__name__)

# The errors a restart of PostgreSQL or Redis raises, and nothing that a bug would.
TRANSIENT_ERRORS = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    BrokerError,
)
RETRY_AFTER_SECONDS = 10
MESSAGE = "The service is briefly unavailable. Please try again in a minute."


def unavailable(request) -> HttpResponse:
    if request.path.startswith("/api/") or "json" in request.META.get("HTTP_ACCEPT", ""):
        response = JsonResponse({"detail": MESSAGE}, status=503)
    else:
        response = HttpResponse(MESSAGE + "\n", status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class ServiceUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, TRANSIENT_ERRORS):
            return None
        # The class and the first line only: the path may hold a case reference, and a driver's
        # message names the server, never the client.
        first_line = str(exception).strip().splitlines()[0] if str(exception).strip() else ""
        log.warning("service unavailable (%s: %s); answered 503", type(exception).__name__, first_line[:200])
        return unavailable(request)
