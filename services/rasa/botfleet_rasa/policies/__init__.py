"""Dialogue policies of botfleet."""
