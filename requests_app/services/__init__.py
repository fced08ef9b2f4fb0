"""Every change of a removal request's state goes through these functions.

One module per stage: ``transitions`` (the guarded compare-and-swap move and its event, which
every other module uses, ``aftercare`` and ``monitoring`` included), ``intake`` (a new request,
finding a case, withdrawal), ``checking`` (verification's state changes and the sweeper) and
``review`` (claims, decisions, holds, publication). They import Django, ``optout`` and the
models of this app; nothing here imports the views, the API or the admin. Callers use the names
below, as ``services.<name>``.
"""

from requests_app.services.checking import (
    add_found_item,
    check_deadline,
    count_verify_attempt,
    finish_checking,
    record_item_verdict,
    requeue_stuck,
    start_checking,
)
from requests_app.services.intake import (
    Reference,
    find_case,
    schedule_verification,
    store_references,
    submit_removal,
    withdraw_removal,
)
from requests_app.services.review import (
    DECIDING_STATES,
    MATCH_STATES,
    REVIEW_PERMISSION,
    approve_removal,
    blocked_by_default,
    check_appeal_reviewer,
    claim_removal,
    claim_to_decide,
    decide_item,
    holder_of,
    items_to_block,
    mark_published,
    reject_removal,
    rejected_by,
    release_holds,
)
from requests_app.services.transitions import REQUESTER, SYSTEM, Actor, log_action, notify_on_commit, swap, transition

__all__ = [
    "DECIDING_STATES",
    "MATCH_STATES",
    "REQUESTER",
    "REVIEW_PERMISSION",
    "SYSTEM",
    "Actor",
    "Reference",
    "add_found_item",
    "approve_removal",
    "blocked_by_default",
    "check_appeal_reviewer",
    "check_deadline",
    "claim_removal",
    "claim_to_decide",
    "count_verify_attempt",
    "decide_item",
    "find_case",
    "finish_checking",
    "holder_of",
    "items_to_block",
    "log_action",
    "mark_published",
    "notify_on_commit",
    "record_item_verdict",
    "reject_removal",
    "rejected_by",
    "release_holds",
    "requeue_stuck",
    "schedule_verification",
    "start_checking",
    "store_references",
    "submit_removal",
    "swap",
    "transition",
    "withdraw_removal",
]
