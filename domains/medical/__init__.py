"""The medical domain plugin."""

# Importing the domain (the `sciflow.domains` entry point imports this package first) registers
# its downloadable datasets; `datasets` needs nothing beyond sciflow itself.
from sciflow_domains.medical import datasets as _datasets  # noqa: F401
