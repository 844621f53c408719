"""The satellite domain plugin."""
