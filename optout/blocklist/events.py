"""Signals other apps listen to, so ``optout`` never imports them.

``release_published`` is sent after a release has been committed, with
``release`` (the ``Release``) and ``holders`` (a frozenset of the holder strings
whose entries are in that release's snapshot; see ``optout.blocklist.hold``).
Every release sends the full set, so a receiver that failed once catches up at
the next release; receivers must therefore be idempotent. A receiver's exception
is logged and does not undo the release.
"""

from django.dispatch import Signal

release_published = Signal()
