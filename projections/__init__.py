"""Projections: durable JetStream consumers that build the read models from the event stream."""
