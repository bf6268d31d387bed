"""Recordings, the admin side: find, watch, export, keep or delete what media wrote (docs/recordings.md).

``files`` is the only module that turns ids and names into files; ``catalogue`` reads manifests; ``state`` keeps
the signaling-owned ``admin.json``; ``audit`` logs every access; ``retention`` and ``combine`` are background
jobs; ``api.add_routes`` wires the admin REST API and page into the application.
"""
