"""The bridge's domain: what it knows about provinces and their platforms, free of any
framework."""
