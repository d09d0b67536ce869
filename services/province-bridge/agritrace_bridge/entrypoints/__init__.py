"""Entry points of the bridge process: its command line."""
