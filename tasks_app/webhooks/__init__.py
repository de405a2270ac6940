"""Webhooks: task events pushed, signed and retried, to endpoints the users register."""
