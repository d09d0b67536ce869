"""Events: facts that other services react to, written with the state change (outbox),
relayed by a publisher (in-process or nameko over RabbitMQ), handled at most once in effect
(inbox of handled ids)."""
