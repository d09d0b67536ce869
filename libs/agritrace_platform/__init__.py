"""The all-in-one platform: every service in one process on one gRPC address."""
