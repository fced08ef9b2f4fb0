from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from requests_app import intake, limits, services
from requests_app.exceptions import TransitionError
from requests_app.forms import CaseForm, RemovalRequestForm, WithdrawForm
from requests_app.models import ItemState, RemovalState

NOT_FOUND = "We could not find a case with that reference and secret. Check both and try again."

# What a requester reads about their case: words, never distances or other people's URLs.
STATE_WORDS = {
    RemovalState.RECEIVED: "Received. We will compare your picture with the links shortly.",
    RemovalState.CHECKING: "Being checked. We are comparing your picture with the links.",
    RemovalState.IN_REVIEW: "Waiting for a reviewer. The comparison is done and a person will decide.",
    RemovalState.APPROVED: "Approved. The links will be in the next blocklist we publish.",
    RemovalState.REJECTED: "Not approved. A reviewer decided not to block these links.",
    RemovalState.PUBLISHED: "Published. The links are on the blocklist dataset builders use.",
    RemovalState.WITHDRAWN: "Withdrawn. You withdrew this request.",
}
ITEM_WORDS = {
    ItemState.PENDING: "not checked yet",
    ItemState.MATCH_STRONG: "the picture at this link matches yours",
    ItemState.MATCH_WEAK: "the picture at this link may match yours",
    ItemState.NO_MATCH: "the picture at this link does not look like yours",
    ItemState.UNREACHABLE: "we could not reach this link",
    ItemState.NOT_AN_IMAGE: "this link does not lead to a picture",
    ItemState.REFUSED: "we do not fetch links to this kind of address; a reviewer will look at it",
}


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
    # The secret is shown on this one response and never again, so this page is
    # rendered in answer to the POST instead of after a redirect.
    receipt = render(request, "requests_app/receipt.txt", {"removal": removal, "secret": secret}).content.decode()
    context = {"removal": removal, "secret": secret, "receipt": receipt}
    return _private(render(request, "requests_app/receipt.html", context, status=201))


def _lookup(request, form):
    """The case for a valid case form, applying the per-client and per-case limits; (removal, limited)."""
    if limits.hit(limits.LOOKUP_PER_CLIENT, limits.client_key(request)):
        return None, True
    case = form.cleaned_data["case"]
    if limits.hit(limits.LOOKUP_PER_CASE, limits.case_key(case)):
        return None, True
    return services.find_case(case, form.cleaned_data["secret"]), False


def _status_context(removal, secret):
    items = [
        {"number": number, "url": item.url, "words": ITEM_WORDS[item.state]}
        for number, item in enumerate(removal.items.filter(found_by_system=False), start=1)
    ]
    return {
        "removal": removal,
        "state_words": STATE_WORDS[removal.state],
        "items": items,
        "found_count": removal.items.filter(found_by_system=True).count(),
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
        context["message"] = form.errors["confirm"][0]
        return _private(render(request, "requests_app/status.html", context, status=400))
    message = "Your request is withdrawn. If you gave an e-mail address, it has been deleted."
    try:
        services.withdraw_removal(removal)
    except TransitionError:
        message = "This request was already withdrawn."
    context = _status_context(removal, secret)
    context["message"] = message
    return _private(render(request, "requests_app/status.html", context))
