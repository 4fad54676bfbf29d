"""Envelopes: one sending of one template version; the agent console."""
