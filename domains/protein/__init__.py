"""The protein domain plugin."""
