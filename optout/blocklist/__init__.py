"""The blocklist: what is blocked, and the numbered, signed releases that publish it.

It owns holds (``holds``: who keeps an entry on the list, so an entry leaves only when its last holder lets
go), numbered releases with their snapshots, deltas and manifests (``releases``), server-side minisign
signing and its keys (``signing``, verification delegated to ``optout.client.minisign``), the decoys of the
public tier (``decoys``), what the publisher tells PostgreSQL's planner (``planner``), and the
``release_published`` event (``events``) that tells the requester side which entries a release carries. It
may import ``optout.models``, ``optout.imaging`` and ``optout.client``; never ``requests_app`` or the feed.
"""
