"""botfleet demo bot's custom actions (rasa-sdk)."""
