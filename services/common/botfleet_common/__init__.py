"""Shared building blocks of botfleet services."""
