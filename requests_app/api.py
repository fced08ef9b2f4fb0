from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.decorators import method_decorator
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, Throttled
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from config.parsers import JSONParser
from requests_app import aftercare, intake, limits, monitoring, services
from requests_app.exceptions import TransitionError
from requests_app.serializers import (
    AddLinksInput,
    AppealInput,
    CaseInput,
    CreateRemovalInput,
    CreateRemovalOutput,
    MonitorInput,
    RemovalStatusOutput,
)
from requests_app.views import NOT_FOUND, sensitive_fields


def api_exception_handler(exc, context):
    """The one place domain errors become HTTP answers."""
    if isinstance(exc, TransitionError):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        exc = DRFValidationError(detail=exc.messages)
    return exception_handler(exc, context)


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = intake.BODY_TOO_LARGE
    default_code = "too_large"


class LimitedError(Throttled):
    """A 429 with Retry-After (DRF sets it from ``wait``) and the same wait in words."""

    def __init__(self, wait: int):
        super().__init__(wait=wait, detail=limits.limited_message(wait))


def _check(limit, ident):
    if wait := limits.hit(limit, ident):
        raise LimitedError(wait)


def _find(request) -> "services.RemovalRequest":
    return _find_in(request.data, request)


def _find_in(raw, request) -> "services.RemovalRequest":
    data = CaseInput(data=raw)
    data.is_valid(raise_exception=True)
    _check(limits.LOOKUP_PER_CLIENT, limits.client_key(request))
    _check(limits.LOOKUP_PER_CASE, limits.case_key(data.validated_data["case"], request))
    removal = services.find_case(data.validated_data["case"], data.validated_data["secret"])
    if removal is None:
        raise NotFound(NOT_FOUND)
    return removal


def _status_body(removal):
    items = removal.items.filter(found_by_system=False)
    body = {
        "case": removal.case,
        "state": removal.state,
        "items": items,
        "found_later": removal.items.filter(found_by_system=True, added_at__isnull=False, decided_at=None).count(),
        "monitor_until": removal.monitor_until if monitoring.is_monitored(removal) else None,
        "appeal_until": aftercare.appeal_deadline(removal) if aftercare.can_appeal(removal) else None,
    }
    return RemovalStatusOutput(body).data


def _admit(request) -> None:
    """Refuse, before any picture is hashed, a client at its creation limit or a body over the cap."""
    if wait := limits.creation_waiting(request):
        raise LimitedError(wait)
    if intake.body_too_large(request):
        raise BodyTooLarge()


def _links(values, errors: dict) -> list[str]:
    """The cleaned links of validated input; problems go into ``errors``."""
    try:
        return intake.clean_urls(values["urls"])
    except DjangoValidationError as exc:
        errors["urls"] = exc.messages
        return []


def _case_and_input(request, serializer_class) -> tuple:
    """The case the request names (with its secret), and the rest of its validated input."""
    removal = _find(request)
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return removal, data.validated_data


def _status_response(removal) -> Response:
    return Response(_status_body(removal), headers={"Cache-Control": "no-store"})


def _references(values, errors: dict) -> list:
    """Reference images or their signals from validated input; problems go into ``errors``."""
    references = []
    for field, read in (("images", intake.hash_uploads), ("signals", intake.parse_client_signals)):
        try:
            references += read(values.get(field, []))
        except DjangoValidationError as exc:
            errors[field] = exc.messages
    return references


def _multipart(request, fields: tuple[str, ...]) -> dict:
    """Multipart input as the serializers take it: repeated fields as lists."""
    raw = request.data
    if not hasattr(raw, "getlist"):
        return raw
    values = {name: raw.get(name) for name in fields if name in raw}
    values["urls"] = raw.getlist("urls")
    values["images"] = request.FILES.getlist("images")
    return values


@method_decorator(sensitive_fields, name="dispatch")
class CreateRemovalView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        request={"application/json": CreateRemovalInput, "multipart/form-data": CreateRemovalInput},
        responses={201: CreateRemovalOutput},
        summary="Ask for the removal of images, without a name",
    )
    def post(self, request):
        # Only accepted requests count (a request sent back for a mistake costs nothing), but a client
        # at its limit is refused before its pictures are hashed.
        _admit(request)
        raw = request.data
        if hasattr(raw, "getlist"):  # multipart: repeated fields
            raw = {
                "urls": raw.getlist("urls"),
                "dataset": raw.get("dataset") or None,
                "email": raw.get("email", ""),
                "images": request.FILES.getlist("images"),
                **{name: raw.get(name) for name in ("monitor_months", "monitor_email") if raw.get(name)},
            }
        data = CreateRemovalInput(data=raw)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        errors = {}
        urls = _links(values, errors)
        references = _references(values, errors)
        if not references and not ("images" in errors or "signals" in errors):
            errors["images"] = ["Send at least one reference image, or its signals."]
        elif len(references) > intake.MAX_IMAGES:
            errors["images"] = [f"Send at most {intake.MAX_IMAGES} reference images."]
        if errors:
            raise DRFValidationError(errors)
        if wait := limits.creation_hit(request):
            raise LimitedError(wait)
        removal, secret = services.submit_removal(
            urls=urls,
            references=references,
            dataset=values.get("dataset"),
            contact_email=values.get("email", ""),
            monitor_months=values["monitor_months"],
            monitor_email=values["monitor_email"],
        )
        body = CreateRemovalOutput({"case": removal.case, "secret": secret, "state": removal.state}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


@method_decorator(sensitive_fields, name="dispatch")
class RemovalStatusView(APIView):
    @extend_schema(request=CaseInput, responses={200: RemovalStatusOutput}, summary="The state of a case")
    def post(self, request):
        return _status_response(_find(request))


@method_decorator(sensitive_fields, name="dispatch")
class WithdrawRemovalView(APIView):
    @extend_schema(request=CaseInput, responses={200: RemovalStatusOutput}, summary="Withdraw a case")
    def post(self, request):
        removal = _find(request)
        services.withdraw_removal(removal)
        return _status_response(removal)


# --- After the first decision -------------------------------------------------------------


@method_decorator(sensitive_fields, name="dispatch")
class AddLinksView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        request={"application/json": AddLinksInput, "multipart/form-data": AddLinksInput},
        responses={200: RemovalStatusOutput},
        summary="Add links to an open or decided case; they are verified like the first ones",
    )
    def post(self, request):
        raw = _multipart(request, ("case", "secret"))
        removal = _find_in(raw, request)
        _admit(request)
        data = AddLinksInput(data=raw)
        data.is_valid(raise_exception=True)
        errors = {}
        urls = _links(data.validated_data, errors)
        references = _references(data.validated_data, errors)
        if errors:
            raise DRFValidationError(errors)
        aftercare.add_links(removal, urls=urls, references=references)
        limits.creation_hit(request)  # counted once accepted, as a new request is
        removal.refresh_from_db()
        return _status_response(removal)


@method_decorator(sensitive_fields, name="dispatch")
class AppealView(APIView):
    @extend_schema(request=AppealInput, responses={200: RemovalStatusOutput}, summary="Appeal a rejection, once")
    def post(self, request):
        removal, values = _case_and_input(request, AppealInput)
        aftercare.appeal_removal(removal, note=values["note"])
        return _status_response(removal)


@method_decorator(sensitive_fields, name="dispatch")
class MonitorView(APIView):
    @extend_schema(
        request=MonitorInput, responses={200: RemovalStatusOutput}, summary="Start or renew watching new datasets"
    )
    def post(self, request):
        removal, values = _case_and_input(request, MonitorInput)
        monitoring.monitor_removal(removal, months=values["months"])
        return _status_response(removal)
