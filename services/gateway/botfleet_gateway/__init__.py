"""botfleet webhook gateway."""
