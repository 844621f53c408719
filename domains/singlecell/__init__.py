"""The singlecell domain plugin."""
