"""Thin adapters that run ``batch.Rules`` inside other engines; each imports its engine only when called.

Hugging Face ``datasets``::

    from optout.client import adapters, state
    from optout.client.batch import Columns, Rules

    rules = Rules(state.load(state_dir))
    clean = dataset.with_format("arrow").filter(
        adapters.datasets_predicate(rules, Columns(url="url", sha256="sha256")), batched=True
    )

The predicate takes a batch as ``datasets`` gives it (an Arrow table with
``with_format("arrow")``, else a dict of columns) and returns which rows to keep.
``datasets`` may run it in worker processes (``num_proc``): the rules travel with
it, pinned to the release they were built from.

Hash-sharing export: ``hash_lines`` writes the partner tier's PDQ hashes as the
line format that ThreatExchange's tools and Meta's hasher-matcher-actioner
import, one ``pdq <64 hex digits>`` per line (the ``pdq`` signal type's name and
its string form). pHashes have no signal type there and are left out.
"""

import numpy as np
import pyarrow as pa

from optout.client.batch import KEPT, Columns, Rules
from optout.client.state import Blocklist


def datasets_predicate(rules: Rules, columns: Columns):
    """A ``Dataset.filter(..., batched=True)`` function: True for the rows ``rules`` keep."""
    names = [name for name in (columns.url, columns.sha256, columns.phash, columns.pdq) if name]

    def keep(batch) -> list[bool]:
        if isinstance(batch, pa.Table):
            record = pa.record_batch([batch.column(name).combine_chunks() for name in names], names=names)
        else:
            record = pa.record_batch({name: pa.array(batch[name]) for name in names})
        return (rules.keep(record, columns)[0] == KEPT).tolist()

    return keep


def hash_lines(blocklist: Blocklist):
    """The PDQ hashes of a (partner) blocklist as ``pdq <hex>`` lines, sorted and unique."""
    for row in np.frombuffer(blocklist.pdq_bytes, dtype=np.uint8).reshape(-1, 32):
        yield f"pdq {row.tobytes().hex()}\n"
