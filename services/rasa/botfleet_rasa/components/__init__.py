"""Rasa graph components of botfleet."""
