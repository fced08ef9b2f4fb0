"""The fetcher's errors, and the one deadline that bounds a whole fetch.

Errors are one family with a ``code`` that matches the per-item verdicts of a removal request:
``FetchRefused`` (``refused``), ``FetchUnreachable`` (``unreachable``: DNS failure, connection error,
timeout, HTTP error status, too many redirects, body over the cap) and ``NotAnImage``
(``not_an_image``). Their messages are safe to show to the person who typed the URL.
"""

import time

# The verdicts a failed fetch gives: request items and dataset rows take their choices from these.
UNREACHABLE = "unreachable"
NOT_AN_IMAGE = "not_an_image"
REFUSED = "refused"

TIMED_OUT = "The server took too long to answer."
REFUSED_ADDRESS = "This address points to a private, local or reserved network; only public web addresses are fetched."


class FetchError(Exception):
    """A fetch that did not give an image. ``code`` is the per-item verdict; ``message`` is safe to show."""

    code = UNREACHABLE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class FetchRefused(FetchError):
    """We will not fetch this: blocked address, scheme, port, or a URL we cannot read."""

    code = REFUSED


class FetchUnreachable(FetchError):
    """We tried and got no image: DNS, connection, timeout, HTTP status, redirects, size."""

    code = UNREACHABLE


class NotAnImage(FetchError):
    """The server answered, but not with a JPEG, PNG, GIF or WebP file."""

    code = NOT_AN_IMAGE


class Deadline:
    def __init__(self, seconds: float):
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._at - time.monotonic()
        if left <= 0:
            raise FetchUnreachable(TIMED_OUT)
        return left

    def expired(self) -> bool:
        return time.monotonic() >= self._at
