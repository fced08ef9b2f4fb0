"""The dataset index: the rows of the datasets we serve, their signals, and how to find them.

It owns bulk import of builders' files (``importer``), the exact, sublinear Hamming-distance matcher
(``matcher``), the fetch-and-hash of dataset rows through the SSRF-safe fetcher (``hashing``), and the demo
dataset (``demo``). It may import ``optout.models``, ``optout.imaging``, ``optout.fetch`` and
``optout.client.canonical``; never ``requests_app``, the blocklist or the feed.
"""
