"""What a requester reads about their case and each of its links: words, never distances or URLs.

The words follow the case's state and each item's verdict, decision and block, so that the page
never says more than is true: "published" speaks of the links that were blocked, not of all of
them, and "a reviewer will look" is said only while a reviewer still has to.
"""

from dataclasses import dataclass

from requests_app.models import ItemDecision, ItemState, RemovalItem, RemovalRequest, RemovalState

# States in which a reviewer has yet to decide (an appeal is decided again).
UNDECIDED_STATES = frozenset(
    {RemovalState.RECEIVED, RemovalState.CHECKING, RemovalState.IN_REVIEW, RemovalState.APPEALED}
)

# What verification found at a link, in the requester's words.
VERDICT_WORDS = {
    ItemState.PENDING: "still being checked",
    ItemState.MATCH_STRONG: "the picture at this link matches yours",
    ItemState.MATCH_WEAK: "the picture at this link may match yours",
    ItemState.NO_MATCH: "the picture at this link does not look like your copy",
    ItemState.UNREACHABLE: "we could not reach this link",
    ItemState.NOT_AN_IMAGE: "this link does not lead to a picture",
    ItemState.REFUSED: "this address is not on the public internet, so we cannot check it",
}

# The outcome of one link, as a short label a screen reader and a CSS class can both use.
BLOCKED = "blocked"
WILL_BE_BLOCKED = "will_be_blocked"
NOT_BLOCKED = "not_blocked"
UNBLOCKED = "unblocked"
BEING_CHECKED = "being_checked"
WAITING = "waiting"


@dataclass(frozen=True)
class LinkOutcome:
    number: int
    outcome: str  # one of the labels above
    headline: str  # "Blocked", "Not blocked", ...
    why: str


def _why_not_blocked(item: RemovalItem, removal: RemovalRequest) -> str:
    if item.decision == ItemDecision.REJECT:
        return "a reviewer decided not to block this link"
    if removal.state == RemovalState.REJECTED:
        return "the request was not approved"
    if item.state in (ItemState.MATCH_STRONG, ItemState.MATCH_WEAK):
        return "a reviewer decided not to block this link"
    return VERDICT_WORDS[item.state]


def link_outcome(number: int, item: RemovalItem, removal: RemovalRequest) -> LinkOutcome:
    state = removal.state
    if state == RemovalState.WITHDRAWN:
        if item.blocked:
            return LinkOutcome(
                number,
                UNBLOCKED,
                "No longer blocked",
                "you withdrew the request; the next blocklist release lifts the block",
            )
        return LinkOutcome(number, NOT_BLOCKED, "Not blocked", "you withdrew the request")
    if state == RemovalState.REVERSED:
        return LinkOutcome(number, NOT_BLOCKED, "Not blocked", "a reviewer reversed the approval of this request")
    if state in UNDECIDED_STATES and item.blocked:
        # A case back in review for new links or copies: what was decided stays.
        return LinkOutcome(number, BLOCKED, "Blocked", "that decision stays while the new links are reviewed")
    if state in UNDECIDED_STATES:
        if item.state == ItemState.PENDING:
            return LinkOutcome(
                number, BEING_CHECKED, "Still being checked", "we are comparing the picture at this link with your copy"
            )
        return LinkOutcome(number, WAITING, "Waiting for a reviewer", VERDICT_WORDS[item.state])
    if item.blocked and state == RemovalState.PUBLISHED:
        return LinkOutcome(number, BLOCKED, "Blocked", "it is on the blocklist dataset builders use")
    if item.blocked:
        return LinkOutcome(
            number, WILL_BE_BLOCKED, "Will be blocked", "approved; it goes on the next blocklist we publish"
        )
    return LinkOutcome(number, NOT_BLOCKED, "Not blocked", _why_not_blocked(item, removal))


def _links(blocked: int, total: int) -> tuple[str, str]:
    """("1 of your 2 links", "is"), ("All 3 of your links", "are"), ("Your link", "is")."""
    if total == 1 and blocked == 1:
        return "Your link", "is"
    if blocked == total:
        return f"All {total} of your links", "are"
    return f"{blocked} of your {total} links", "is" if blocked == 1 else "are"


def case_words(removal: RemovalRequest, outcomes: list[LinkOutcome]) -> str:
    """One sentence for the whole case, true for every link."""
    total = len(outcomes)
    blocked = sum(1 for outcome in outcomes if outcome.outcome in (BLOCKED, WILL_BE_BLOCKED))
    links, verb = _links(blocked, total)
    match removal.state:
        case RemovalState.RECEIVED:
            return "Received. We will compare your picture with the links shortly."
        case RemovalState.CHECKING:
            return "Being checked. We are comparing your picture with the links."
        case RemovalState.IN_REVIEW:
            return "Waiting for a reviewer. The comparison is done and a person will decide."
        case RemovalState.APPROVED if blocked:
            return f"Approved. {links} will be on the next blocklist we publish."
        case RemovalState.APPROVED:
            return "Approved for other copies of your picture we found; none of the links you gave is blocked."
        case RemovalState.PUBLISHED if blocked:
            return f"Published. {links} {verb} on the blocklist dataset builders use."
        case RemovalState.PUBLISHED:
            return "Published for other copies of your picture we found; none of the links you gave is blocked."
        case RemovalState.REJECTED:
            return "Not approved. A reviewer decided not to block these links."
        case RemovalState.APPEALED:
            return "Appealed. A reviewer other than the one who decided is looking at your request again."
        case RemovalState.REVERSED:
            return "Reversed. A reviewer lifted the block; the next blocklist we publish no longer lists these links."
        case _:
            return "Withdrawn. You withdrew this request."


def found_words(removal: RemovalRequest) -> str:
    """About the other copies the system found in the datasets (their links are never shown)."""
    found = list(removal.items.filter(found_by_system=True).only("blocked"))
    if not found:
        return ""
    count = len(found)
    copies = f"{count} other cop{'y' if count == 1 else 'ies'} of your picture"
    if removal.state in UNDECIDED_STATES:
        them = "it" if count == 1 else "them"
        return f"We also found {copies} in the datasets. A reviewer will look at {them} too."
    if removal.state == RemovalState.WITHDRAWN:
        return f"We had also found {copies} in the datasets; withdrawing the request leaves them unblocked."
    blocked = sum(1 for item in found if item.blocked)
    if removal.state == RemovalState.REJECTED or not blocked:
        return f"We also found {copies} in the datasets; none of them is blocked."
    when = "are on the blocklist" if removal.state == RemovalState.PUBLISHED else "will be on the next blocklist"
    return f"We also found {copies} in the datasets; {blocked} of them {when}."


def has_no_match(removal: RemovalRequest) -> bool:
    """Whether to show the next steps after a "does not look like your copy" verdict."""
    if removal.state not in (RemovalState.IN_REVIEW, RemovalState.REJECTED, RemovalState.APPROVED):
        return False
    return removal.items.filter(found_by_system=False, state=ItemState.NO_MATCH, blocked=False).exists()


def later_words(removal: RemovalRequest) -> str:
    """About copies monitoring found after the first decision, while a reviewer still has to decide them."""
    count = removal.items.filter(found_by_system=True, added_at__isnull=False, decided_at=None).count()
    if not count:
        return ""
    if count == 1:
        return "1 new copy of your picture was found in a dataset and is being reviewed."
    return f"{count} new copies of your picture were found in the datasets and are being reviewed."
