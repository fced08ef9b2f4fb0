"""The feed: how builders get the blocklist over HTTP.

It owns the feed views that serve release artifacts, manifests and the public key with ETags and caching
(``views``), the blocklist lookup API (``api``), partner consumers and their tokens (``consumers``), and the
per-consumer and per-client throttling of both (``throttling``). It may import ``optout.models``,
``optout.blocklist`` and ``optout.client``; never ``requests_app`` or the index.
"""
