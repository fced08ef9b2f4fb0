from datetime import datetime

from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from requests_app import aftercare, intake, limits, monitoring, outcomes, receipts, services, transparency
from requests_app.exceptions import TransitionError
from requests_app.forms import (
    AddLinksForm,
    AppealForm,
    CaseForm,
    MonitorForm,
    RemovalRequestForm,
    WithdrawForm,
)
from requests_app.models import ENDED_STATES, RemovalState

NOT_FOUND = "We could not find a case with that reference and secret. Check both and try again."


# Fields that carry a requester's secret or address: Django's error reports mask them on every view
# that takes them (the API's too).
sensitive_fields = sensitive_post_parameters("secret", "email", "contact_email", "monitor_email")


def _private(response):
    """Pages that show a secret or a case: never cached, never sent as a referrer."""
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _too_many(request, template, context, wait: int):
    """A 429 that keeps what the person typed, with Retry-After and the same wait in words."""
    context["limited"] = limits.limited_message(wait)
    response = _private(render(request, template, context, status=429))
    response["Retry-After"] = str(wait)
    return response


def _kept(form_class, data):
    """An unbound form showing what was typed (a bound one would be validated, and hash files, again)."""
    return form_class(initial={name: data.get(name) for name in form_class.base_fields if name in data})


@require_GET
def landing(request):
    return render(request, "requests_app/landing.html")


@require_GET
def transparency_report(request):
    """Public totals (requests_app/transparency.py), as HTML or, with ?format=json or an Accept header
    that asks for JSON first, as JSON."""
    report = transparency.report()
    wants_json = (
        request.GET.get("format") == "json" or request.accepts("application/json") and not request.accepts("text/html")
    )
    if wants_json:
        response = JsonResponse(report.as_json())
    else:
        context = {
            "report": report,
            "median_words": _duration_words(report.median_hours_to_decision),
            "release_created": datetime.fromisoformat(report.release.created) if report.release else None,
        }
        response = render(request, "requests_app/transparency.html", context)
    response["Cache-Control"] = f"public, max-age={transparency.CACHE_SECONDS}"
    response["Vary"] = "Accept"
    return response


def _duration_words(hours: float | None) -> str:
    if hours is None:
        return ""
    if hours < 1:
        return "less than an hour"
    if hours < 48:
        return f"{round(hours)} hour{'s' if round(hours) != 1 else ''}"
    return f"{round(hours / 24)} days"


@never_cache
@require_http_methods(["GET", "POST"])
@sensitive_fields
def new_request(request):
    if request.method != "POST":
        return render(request, "requests_app/new.html", {"form": RemovalRequestForm()})
    # Only accepted requests count against the limit: a form sent back for a typo costs nothing.
    # A client already at its limit is refused before its pictures are hashed.
    if wait := limits.creation_waiting(request):
        return _too_many(request, "requests_app/new.html", {"form": _kept(RemovalRequestForm, request.POST)}, wait)
    if intake.body_too_large(request):
        context = {"form": RemovalRequestForm(), "body_error": intake.BODY_TOO_LARGE}
        return render(request, "requests_app/new.html", context, status=413)
    form = RemovalRequestForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(request, "requests_app/new.html", {"form": form}, status=400)
    if wait := limits.creation_hit(request):
        return _too_many(request, "requests_app/new.html", {"form": _kept(RemovalRequestForm, request.POST)}, wait)
    monitor_months, monitor_email = form.monitoring()
    removal, secret = services.submit_removal(
        urls=form.cleaned_data["urls"],
        references=form.references(),
        dataset=form.cleaned_data["dataset"],
        contact_email=form.cleaned_data["contact_email"],
        monitor_months=monitor_months,
        monitor_email=monitor_email,
    )
    # Post/redirect/get: the receipt page shows the secret once (requests_app/receipts.py).
    response = _private(redirect("requests_app:receipt", permanent=False))
    response.status_code = 303
    receipts.attach(response, case=removal.case, secret=secret)
    return response


@never_cache
@require_GET
def receipt(request):
    shown = receipts.read(request)
    removal = services.find_case(*shown) if shown else None
    if removal is None:
        response = _private(render(request, "requests_app/receipt_shown.html", status=410))
    else:
        secret = shown[1]
        context = {
            "removal": removal,
            "secret": secret,
            "secret_groups": secret.split("-"),
            "receipt": _receipt_text(request, removal, secret, with_links=False),
            "receipt_with_links": _receipt_text(request, removal, secret, with_links=True),
        }
        response = _private(render(request, "requests_app/receipt.html", context))
    receipts.forget(response)
    return response


def _receipt_text(request, removal, secret, *, with_links: bool) -> str:
    context = {
        "removal": removal,
        "secret": secret,
        "links": removal.items.filter(found_by_system=False) if with_links else [],
    }
    return render(request, "requests_app/receipt.txt", context).content.decode()


def _lookup(request, form):
    """The case for a valid case form, applying the per-client and per-case limits; (removal, seconds to wait)."""
    if wait := limits.hit(limits.LOOKUP_PER_CLIENT, limits.client_key(request)):
        return None, wait
    case = form.cleaned_data["case"]
    if wait := limits.hit(limits.LOOKUP_PER_CASE, limits.case_key(case, request)):
        return None, wait
    return services.find_case(case, form.cleaned_data["secret"]), 0


def _status_context(removal, secret):
    links = [
        outcomes.link_outcome(number, item, removal)
        for number, item in enumerate(removal.items.filter(found_by_system=False), start=1)
    ]
    return {
        "removal": removal,
        "state_words": outcomes.case_words(removal, links),
        "links": links,
        "found_words": outcomes.found_words(removal),
        "no_match_help": outcomes.has_no_match(removal),
        "rejected_reason": removal.get_decision_reason_display() if removal.state == RemovalState.REJECTED else "",
        "withdraw_form": WithdrawForm(initial={"case": removal.case, "secret": secret}),
        "can_withdraw": removal.state != RemovalState.WITHDRAWN,
        **_followup_context(removal, secret),
    }


def _followup_context(removal, secret) -> dict:
    """What the requester can do after the first decision: add links, appeal, keep watching."""
    credentials = {"case": removal.case, "secret": secret}
    ended = removal.state in ENDED_STATES
    can_add = not ended and removal.state != RemovalState.APPEALED
    return {
        "later_words": outcomes.later_words(removal),
        "links_form": AddLinksForm(initial=credentials) if can_add else None,
        "appeal_form": AppealForm(initial=credentials) if aftercare.can_appeal(removal) else None,
        "appeal_until": aftercare.appeal_deadline(removal) if removal.state == RemovalState.REJECTED else None,
        "monitor_until": removal.monitor_until if monitoring.is_monitored(removal) else None,
        "monitor_form": MonitorForm(initial=credentials) if not ended else None,
    }


@never_cache
@require_http_methods(["GET", "POST"])
@sensitive_fields
def status(request):
    if request.method != "POST":
        return _private(render(request, "requests_app/status.html", {"form": CaseForm()}))
    form = CaseForm(request.POST)
    if not form.is_valid():
        return _private(render(request, "requests_app/status.html", {"form": form}, status=400))
    removal, wait = _lookup(request, form)
    if wait:
        return _too_many(
            request, "requests_app/status.html", {"form": _kept(CaseForm, {"case": form.cleaned_data["case"]})}, wait
        )
    if removal is None:
        return _private(render(request, "requests_app/status.html", {"form": form, "not_found": NOT_FOUND}, status=404))
    return _private(render(request, "requests_app/status.html", _status_context(removal, form.cleaned_data["secret"])))


# --- Acts on a case: withdrawal, added links, appeals, monitoring -------------------------------


def _case_action(request, form_class, form_key: str, act, *, counts_as_request: bool = False):
    """A status-page form: find the case (with the lookup limits), validate, act, show the case again.

    ``act(removal, cleaned_data)`` returns the message to show, or raises TransitionError, whose
    message is shown instead. Additions count against the creation limit, as a new request would.
    """
    credentials = CaseForm(request.POST)
    if not credentials.is_valid():
        return _private(
            render(request, "requests_app/status.html", {"form": CaseForm(), "not_found": NOT_FOUND}, status=400)
        )
    removal, wait = _lookup(request, credentials)
    if wait:
        context = {"form": _kept(CaseForm, {"case": credentials.cleaned_data["case"]})}
        return _too_many(request, "requests_app/status.html", context, wait)
    if removal is None:
        return _private(
            render(request, "requests_app/status.html", {"form": CaseForm(), "not_found": NOT_FOUND}, status=404)
        )
    secret = credentials.cleaned_data["secret"]
    if counts_as_request and (wait := limits.creation_waiting(request)):
        return _too_many(request, "requests_app/status.html", _status_context(removal, secret), wait)
    form = form_class(request.POST, request.FILES)
    status_code = 200
    if not form.is_valid():
        context = _status_context(removal, secret)
        context[form_key] = form
        return _private(render(request, "requests_app/status.html", context, status=400))
    try:
        message = act(removal, form.cleaned_data)
    except TransitionError as exc:
        message, status_code = str(exc), 400
    else:
        if counts_as_request:
            limits.creation_hit(request)
    removal.refresh_from_db()
    context = _status_context(removal, secret)
    context["message"] = message
    return _private(render(request, "requests_app/status.html", context, status=status_code))


def _add_links(removal, data) -> str:
    added = aftercare.add_links(removal, urls=data["urls"], references=data["images"])
    return f"{added} link{'s' if added != 1 else ''} added. We compare {'them' if added != 1 else 'it'} with your picture now."


def _withdraw(removal, data) -> str:
    try:
        services.withdraw_removal(removal)
    except TransitionError:
        return "This request was already withdrawn."
    return "Your request is withdrawn. If you gave an e-mail address, it has been deleted."


def _appeal(removal, data) -> str:
    aftercare.appeal_removal(removal, note=data["note"])
    return "Your appeal is sent. A reviewer other than the one who decided will look at the request again."


def _monitor(removal, data) -> str:
    monitoring.monitor_removal(removal, months=data["months"])
    return f"We keep watching new datasets until {removal.monitor_until:%d %B %Y}."


@never_cache
@require_http_methods(["POST"])
@sensitive_fields
def add_links(request):
    return _case_action(request, AddLinksForm, "links_form", _add_links, counts_as_request=True)


@never_cache
@require_http_methods(["POST"])
@sensitive_fields
def withdraw(request):
    return _case_action(request, WithdrawForm, "withdraw_form", _withdraw)


@never_cache
@require_http_methods(["POST"])
@sensitive_fields
def appeal(request):
    return _case_action(request, AppealForm, "appeal_form", _appeal)


@never_cache
@require_http_methods(["POST"])
@sensitive_fields
def monitor(request):
    return _case_action(request, MonitorForm, "monitor_form", _monitor)
