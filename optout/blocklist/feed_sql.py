"""What each file of a release holds, as SQL (``releases``): the partner tier's entries, the public tier's groups
of real keys and decoys, and the small tables a public delta starts from."""

from django.db import connection

from optout.models import BlocklistEntry, PublicDecoy

ADD = "'add'"
_ENTRIES = BlocklistEntry._meta.db_table
_DECOYS = PublicDecoy._meta.db_table


def phash_hex() -> str:
    if connection.vendor == "postgresql":
        return "lpad(to_hex(e.phash), 16, '0')"  # to_hex of a negative bigint is its two's complement
    return "printf('%016x', e.phash)"


def partner_columns(op: str) -> str:
    return (
        f"e.url_sha256, {op}, NULLIF(e.sha256, ''), CASE WHEN e.phash IS NOT NULL THEN {phash_hex()} END, "
        "NULLIF(e.pdq, ''), CASE WHEN e.pdq <> '' THEN e.pdq_quality END"
    )


def partner_snapshot() -> str:
    return f"SELECT {partner_columns(ADD)} FROM {_ENTRIES} e WHERE e.blocked ORDER BY e.url_sha256"


def partner_delta() -> str:
    # A dirty entry never published and not blocked was held and released between two releases: nothing to say.
    op = "CASE WHEN e.blocked THEN 'add' ELSE 'remove' END"
    return (
        f"SELECT {partner_columns(op)} FROM {_ENTRIES} e "
        "WHERE e.dirty AND (e.blocked OR e.published) ORDER BY e.url_sha256"
    )


def groups(flag: str, entries: str = "") -> str:
    """Each entry of the state ``flag`` names (``blocked``: now; ``published``: the latest release), with the
    key whose line carries its image sha256: the smallest of its group (``decoys``), the real one only as often
    as any other member. An entry whose own key is another group's decoy (``decoys.was_decoy``) has its line
    already: the sha256 goes on one of its own decoys, or a line published long ago would change for it alone.
    ``entries``: a query of entry ids to limit it to."""
    limit = f"JOIN ({entries}) x ON x.id = e.id" if entries else ""
    return f"""
        SELECT e.id, e.url_sha256, NULLIF(e.sha256, '') AS sha256,
               CASE WHEN MIN(d.url_sha256) IS NULL THEN e.url_sha256
                    WHEN e.url_sha256 < MIN(d.url_sha256) AND NOT EXISTS (
                        SELECT 1 FROM {_DECOYS} o WHERE o.url_sha256 = e.url_sha256 AND o.entry_id <> e.id
                    ) THEN e.url_sha256
                    ELSE MIN(d.url_sha256) END AS carrier
        FROM {_ENTRIES} e {limit} LEFT JOIN {_DECOYS} d ON d.entry_id = e.id
        WHERE e.{flag} GROUP BY e.id, e.url_sha256, e.sha256
    """


def members(groups: str) -> str:
    """Every key of those groups (each entry's own and its decoys') with the sha256 its line carries, if any; a
    key held by two groups comes once from each."""
    return f"""
        SELECT g.url_sha256 AS k, CASE WHEN g.carrier = g.url_sha256 THEN g.sha256 END AS sha FROM {groups} g
        UNION ALL
        SELECT d.url_sha256, CASE WHEN g.carrier = d.url_sha256 THEN g.sha256 END
        FROM {_DECOYS} d JOIN {groups} g ON g.id = d.entry_id
    """


def lines(groups: str) -> str:
    """The public lines (k, sha) of those groups: one per key."""
    return f"SELECT k, MAX(sha) AS sha FROM ({members(groups)}) p GROUP BY k"


def public_snapshot() -> str:
    grp = f"WITH grp AS ({groups('blocked')})"
    if connection.vendor != "postgresql":
        return f"{grp} SELECT k, 'add', sha FROM ({lines('grp')}) s ORDER BY k"
    # The same lines from one sort instead of a grouping then a sort: at a million keys 1.6 s instead of 3.1 s.
    # Sorted by key and then sha256 last-null-first, the first line of a key is the one ``lines``'s MAX keeps.
    return f"{grp} SELECT DISTINCT ON (k) k, 'add', sha FROM ({members('grp')}) p ORDER BY k, sha DESC NULLS LAST"


# The public delta starts from the few entries that changed. Their keys, and the entries whose groups hold one
# of those keys, go into small temporary tables first, analysed, so that PostgreSQL plans the rest as lookups
# by index: planned as one statement from the big tables' statistics (taken, say, when every entry was dirty),
# it once read every decoy several times over and took 35 s for 1,000 changed entries of 100,000.
_DELTA_TABLES = (
    ("optout_delta_dirty", f"SELECT id, url_sha256 FROM {_ENTRIES} WHERE dirty"),
    (
        "optout_delta_touched",  # the keys a changed entry may have moved: its own and its decoys'
        f"SELECT url_sha256 AS k FROM optout_delta_dirty UNION SELECT d.url_sha256 FROM {_DECOYS} d "
        "JOIN optout_delta_dirty c ON c.id = d.entry_id",
    ),
    (
        "optout_delta_near",  # the entries whose groups hold one of those keys
        f"SELECT e.id FROM {_ENTRIES} e JOIN optout_delta_touched t ON t.k = e.url_sha256 "
        f"UNION SELECT d.entry_id FROM {_DECOYS} d JOIN optout_delta_touched t ON t.k = d.url_sha256",
    ),
    # Their groups and lines now and in the latest release.
    ("optout_delta_groups_now", groups("blocked", "SELECT id FROM optout_delta_near")),
    ("optout_delta_groups_before", groups("published", "SELECT id FROM optout_delta_near")),
    ("optout_delta_now", lines("optout_delta_groups_now")),
    ("optout_delta_before", lines("optout_delta_groups_before")),
)


def public_delta() -> str:
    # Each touched key compared between the two states over the groups that hold one of them: a group arrives
    # and leaves whole, and a key another group still holds stays. Only lines that change are written: a line
    # that stays as it was says nothing, and rewriting it would point at the one key of a group that was
    # already public (an entry whose key was another group's decoy). Reads ``_DELTA_TABLES``.
    return """
        SELECT t.k, CASE WHEN now.k IS NOT NULL THEN 'add' ELSE 'remove' END, now.sha
        FROM optout_delta_touched t LEFT JOIN optout_delta_now now ON now.k = t.k
        LEFT JOIN optout_delta_before before ON before.k = t.k
        WHERE (now.k IS NULL) <> (before.k IS NULL) OR (now.k IS NOT NULL AND COALESCE(now.sha, '') <> COALESCE(before.sha, ''))
        ORDER BY t.k
    """


def make_delta_tables() -> None:
    with connection.cursor() as cursor:
        for name, sql in _DELTA_TABLES:
            cursor.execute(f"DROP TABLE IF EXISTS {name}")  # a test's publishers share one connection
            cursor.execute(f"CREATE TEMPORARY TABLE {name} AS {sql}")
            cursor.execute(f"ANALYZE {name}")
