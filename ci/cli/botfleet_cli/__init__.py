"""botfleet's command line."""
