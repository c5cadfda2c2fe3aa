"""botfleet's Rasa extensions: graph components, tracker store, event broker, metrics."""
