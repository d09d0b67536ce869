"""Adapters of the bridge's ports: provincial platforms (REST, drop folder) and their loader."""
