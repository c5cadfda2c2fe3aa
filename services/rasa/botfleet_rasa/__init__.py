"""botfleet's Rasa extensions: graph components, tracker store, event broker, metrics."""

from botfleet_rasa import instrumentation, rasa_fixes

# Rasa imports this package when it loads any botfleet class named in endpoints.yml,
# credentials.yml or config.yml: the earliest hook there is in every server process.
rasa_fixes.apply()
instrumentation.apply()
