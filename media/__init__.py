"""Hoichan's media relay: aiortc peer connections, with RTP forwarded packet by packet between them."""
