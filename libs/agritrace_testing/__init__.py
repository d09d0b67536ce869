"""Test support shared by the services' unit tests: small in-memory fakes, no mocks."""
