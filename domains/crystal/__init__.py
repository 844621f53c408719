"""The crystal domain plugin."""

# Importing the domain (the `sciflow.domains` entry point imports this package first) registers
# its downloadable datasets; `datasets` needs nothing beyond sciflow itself.
from sciflow_domains.crystal import datasets as _datasets  # noqa: F401
