from celery import shared_task

from requests_app import verification


@shared_task(acks_late=True, ignore_result=True)
def verify_removal(removal_id: int) -> None:
    """Verify a removal request's items. Takes an id, re-checks state, safe to run twice."""
    verification.verify_removal(removal_id)
