"""The load test (`make load`): the security plan's stress test, as locust users over gRPC.

seed.py builds the goods to ask about through the platform's own APIs; locustfile.py is what
locust runs (in a virtualenv of its own: locust brings gevent, which must not meet the services'
processes or the test suite); __main__.py starts a platform when none is given, seeds it, runs
locust headless and judges its figures."""
