"""Scheduled sessions: weekly slots and one-off sessions that open a room and notify their parties."""
