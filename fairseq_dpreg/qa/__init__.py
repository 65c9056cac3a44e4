"""Extractive question answering: data readers and evaluation (see ``metrics``)."""
