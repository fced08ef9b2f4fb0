"""Signals other apps listen to, so ``optout`` never imports them.

``release_published`` is sent after a release has been committed, with
``release`` (the ``Release``) and ``newest_hold`` (the id of the newest hold when
it was made): ``holds.held_in(holders, newest=newest_hold)`` says which holders'
entries are in that release's snapshot. (It once sent every holder string: a
million of them at a million entries, 0.6 s and 100 MB of every release.) Every
release answers for every hold, so a receiver that failed once catches up at the
next release; receivers must therefore be idempotent. A receiver's exception is
logged and does not undo the release.
"""

from django.dispatch import Signal

release_published = Signal()
