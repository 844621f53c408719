"""sciflow domain plugins, installed as the import package `sciflow_domains`."""
