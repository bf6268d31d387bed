"""Cluster mode: media nodes and signaling processes sharing one Redis (docs/cluster.md)."""
