"""Publishing and consuming events.

- `Publisher` is the port the outbox relay publishes through.
- `InProcessBus` (all-in-one mode) delivers straight to subscribed handlers.
- `NamekoPublisher` (microservices mode) dispatches to RabbitMQ with nameko's standalone
  dispatcher; consumers are nameko workers in their own processes (`nameko_worker`).
- `IdempotentHandler` wraps a consumer's handler with the inbox, so a re-delivered event
  changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace

from agritrace_kernel import metrics
from agritrace_kernel.events.model import Event
from agritrace_kernel.telemetry import extract_context

log = logging.getLogger(__name__)
tracer = trace.get_tracer("agritrace.events")


class Publisher(Protocol):
    def publish(self, event: Event) -> None: ...


class InboxUnitOfWork(Protocol):
    """What an idempotent handler needs of a service's unit of work."""

    events: Any  # EventStore, with claim(consumer, event_id)

    def __enter__(self) -> Any: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None: ...
    def commit(self) -> None: ...


@dataclass(frozen=True)
class Subscription:
    """A consumer's interest in one event of one source service."""

    consumer: str
    source: str
    name: str
    handle: Callable[[Event], None]


class IdempotentHandler:
    """Runs `handler(event, uow)` once per (consumer, event id), inside one transaction with
    the inbox claim: either both the effects and the claim commit, or neither."""

    def __init__(
        self,
        consumer: str,
        handler: Callable[[Event, Any], None],
        uow_factory: Callable[[], InboxUnitOfWork],
    ) -> None:
        self.consumer = consumer
        self._handler = handler
        self._uow_factory = uow_factory

    def __call__(self, event: Event) -> None:
        token = otel_context.attach(extract_context(event.trace_context))
        try:
            with tracer.start_as_current_span(
                f"{self.consumer} handle {event.routing_key}",
                kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.message.id": event.event_id},
            ), self._uow_factory() as uow:
                if not uow.events.claim(self.consumer, event.event_id):
                    metrics.events_handled_total.labels(
                        self.consumer, event.name, "duplicate"
                    ).inc()
                    return
                self._handler(event, uow)
                uow.commit()
            metrics.events_handled_total.labels(self.consumer, event.name, "handled").inc()
        finally:
            otel_context.detach(token)


class InProcessBus:
    """All-in-one delivery: publish calls every subscribed handler in the relay's thread.
    A failing handler makes publish fail, so the relay retries the event later; handlers that
    already succeeded drop the repeat through their inbox."""

    def __init__(self) -> None:
        self._subscriptions: dict[tuple[str, str], list[Subscription]] = defaultdict(list)

    def subscribe(self, subscription: Subscription) -> None:
        self._subscriptions[(subscription.source, subscription.name)].append(subscription)

    def publish(self, event: Event) -> None:
        for subscription in self._subscriptions.get((event.source, event.name), []):
            subscription.handle(event)


class NamekoPublisher:
    """Dispatches events to RabbitMQ as nameko events (source service, event type)."""

    def __init__(self, amqp_uri: str) -> None:
        # nameko's publisher uses kombu directly and does not monkey-patch: safe in a grpcio
        # process. Imported here so the all-in-one mode never needs it.
        from nameko import serialization
        from nameko.amqp.publish import Publisher
        from nameko.standalone.events import get_event_exchange

        config = {"AMQP_URI": amqp_uri}
        serializer, _ = serialization.setup(config)
        self._publisher = Publisher(amqp_uri, serializer=serializer)
        self._exchanges: dict[str, Any] = {}
        self._exchange_of: Callable[[str], Any] = lambda source: get_event_exchange(
            source, config)

    def publish(self, event: Event) -> None:
        # The source's exchange is declared with the message (kombu does it once per
        # connection): nameko's standalone dispatcher leaves that to the consumers, so a
        # service publishing before any consumer of its events has started would find no
        # exchange (404) and its relay would retry forever.
        exchange = self._exchanges.get(event.source)
        if exchange is None:
            exchange = self._exchanges[event.source] = self._exchange_of(event.source)
        self._publisher.publish(event.to_wire(), exchange=exchange, routing_key=event.name,
                                declare=[exchange])
