"""Hoichan's signaling server: aiohttp + python-socketio, pairing district and central endpoints."""

__version__ = "0.1.0"
