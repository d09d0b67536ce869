"""The shared kernel: configuration, database, events, the gRPC server kit and telemetry.

Importing this package imports nothing heavy; nameko workers import only what they need, so
eventlet and grpcio never meet in one process.
"""
