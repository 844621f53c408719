"""The crystal domain plugin."""
