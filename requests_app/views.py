from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from requests_app import intake, limits, outcomes, receipts, services
from requests_app.exceptions import TransitionError
from requests_app.forms import CaseForm, RemovalRequestForm, WithdrawForm
from requests_app.models import RemovalState

NOT_FOUND = "We could not find a case with that reference and secret. Check both and try again."


def _private(response):
    """Pages that show a secret or a case: never cached, never sent as a referrer."""
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _too_many(request, template, context):
    context["limited"] = limits.LIMITED_MESSAGE
    return _private(render(request, template, context, status=429))


@require_GET
def landing(request):
    return render(request, "requests_app/landing.html")


@never_cache
@require_http_methods(["GET", "POST"])
def new_request(request):
    if request.method != "POST":
        return render(request, "requests_app/new.html", {"form": RemovalRequestForm()})
    if limits.hit(limits.CREATE_PER_CLIENT, limits.client_key(request)):
        return _too_many(request, "requests_app/new.html", {"form": RemovalRequestForm()})
    if intake.body_too_large(request):
        context = {"form": RemovalRequestForm(), "body_error": intake.BODY_TOO_LARGE}
        return render(request, "requests_app/new.html", context, status=413)
    form = RemovalRequestForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(request, "requests_app/new.html", {"form": form}, status=400)
    removal, secret = services.submit_removal(
        urls=form.cleaned_data["urls"],
        references=form.references(),
        dataset=form.cleaned_data["dataset"],
        contact_email=form.cleaned_data["contact_email"],
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
    """The case for a valid case form, applying the per-client and per-case limits; (removal, limited)."""
    if limits.hit(limits.LOOKUP_PER_CLIENT, limits.client_key(request)):
        return None, True
    case = form.cleaned_data["case"]
    if limits.hit(limits.LOOKUP_PER_CASE, limits.case_key(case)):
        return None, True
    return services.find_case(case, form.cleaned_data["secret"]), False


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
    }


@never_cache
@require_http_methods(["GET", "POST"])
def status(request):
    if request.method != "POST":
        return _private(render(request, "requests_app/status.html", {"form": CaseForm()}))
    form = CaseForm(request.POST)
    if not form.is_valid():
        return _private(render(request, "requests_app/status.html", {"form": form}, status=400))
    removal, limited = _lookup(request, form)
    if limited:
        return _too_many(request, "requests_app/status.html", {"form": CaseForm()})
    if removal is None:
        return _private(render(request, "requests_app/status.html", {"form": form, "not_found": NOT_FOUND}, status=404))
    return _private(render(request, "requests_app/status.html", _status_context(removal, form.cleaned_data["secret"])))


@never_cache
@require_http_methods(["POST"])
def withdraw(request):
    form = WithdrawForm(request.POST)
    credentials = CaseForm(request.POST)
    if not credentials.is_valid():
        return _private(
            render(request, "requests_app/status.html", {"form": CaseForm(), "not_found": NOT_FOUND}, status=400)
        )
    removal, limited = _lookup(request, credentials)
    if limited:
        return _too_many(request, "requests_app/status.html", {"form": CaseForm()})
    if removal is None:
        return _private(
            render(request, "requests_app/status.html", {"form": CaseForm(), "not_found": NOT_FOUND}, status=404)
        )
    secret = credentials.cleaned_data["secret"]
    if not form.is_valid():
        # The box was not ticked: show the case again, with the reason.
        context = _status_context(removal, secret)
        context["withdraw_form"] = form
        return _private(render(request, "requests_app/status.html", context, status=400))
    message = "Your request is withdrawn. If you gave an e-mail address, it has been deleted."
    try:
        services.withdraw_removal(removal)
    except TransitionError:
        message = "This request was already withdrawn."
    context = _status_context(removal, secret)
    context["message"] = message
    return _private(render(request, "requests_app/status.html", context))
