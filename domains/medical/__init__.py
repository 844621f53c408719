"""The medical domain plugin."""
