"""A client of a hub's HTTP API: the SSE parser, a resuming event stream, lines for a terminal.

It speaks only HTTP to a hub, so it imports the kernel (the event schema) and nothing of
``hub`` or ``workers``."""
