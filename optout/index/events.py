"""Signals of the dataset index that other apps listen to, so ``optout`` never imports them.

``rows_gained_signals`` is sent, with ``dataset_id`` and ``hashed`` (True when a
worker computed the signals, False for an import), after rows of that dataset
committed with new signals: an import with hash columns, a new dataset, or
``hash_rows``. It says only "look again"; receivers find the rows themselves
(requests_app's monitoring keeps its own high-water marks), so a lost signal
delays work and loses none.
"""

from django.dispatch import Signal

rows_gained_signals = Signal()
