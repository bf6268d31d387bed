"""Sharing in a room: medical images, vitals cards and annotations, kept with the consult record."""
