"""callhub: the shared kernel (event schema, keyspace, settings, connections), imported by
the API replica (``hub``) and the write side (``workers``), importing neither.

Above it: ``callhub.client`` (a client of a hub's HTTP API) and ``callhub.cli``
(the command line, on top of everything)."""
