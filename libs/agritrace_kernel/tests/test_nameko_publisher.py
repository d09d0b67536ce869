"""The microservices-mode publisher against the RabbitMQ at 127.0.0.1:5672, on a vhost of the
test's own: a service may publish before any consumer of its events has started (the source's
exchange is declared with the message), and a consumer bound later gets what follows."""

from __future__ import annotations

from agritrace_kernel.events.bus import NamekoPublisher
from agritrace_kernel.events.model import Event
from agritrace_testing.polling import eventually


def test_events_published_before_any_consumer_exist_reach_a_later_one(vhost_uri: str) -> None:
    from kombu import Connection, Queue
    from nameko.standalone.events import get_event_exchange

    publisher = NamekoPublisher(vhost_uri)
    publisher.publish(Event("probe", "probe_started", {"n": 0}))  # no exchange yet: no 404

    with Connection(vhost_uri) as connection:  # type: ignore[no-untyped-call]
        channel = connection.channel()
        queue = Queue("probe-listener", get_event_exchange("probe", {}),
                      routing_key="probe_happened", channel=channel)
        queue.declare()
        publisher.publish(Event("probe", "probe_happened", {"n": 1}))
        message = eventually(lambda: queue.get(no_ack=True), timeout=10,
                             what="the event in the consumer's queue")
        assert message.payload["payload"] == {"n": 1}
