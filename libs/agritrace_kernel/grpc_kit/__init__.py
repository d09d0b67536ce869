"""The gRPC server kit: server construction, the interceptor chain, health and reflection."""
