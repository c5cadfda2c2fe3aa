"""botfleet's Kubernetes operator (kopf): Bot custom resources to running bots."""
