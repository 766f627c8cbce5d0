"""Webhooks: events published by the server, signed and delivered with retries."""
