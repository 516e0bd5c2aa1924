"""The API replica: HTTP (``hub.api``) over the stream engine (``hub.stream``) over Redis
reads (``hub.store``). Imports the kernel (``callhub``), never ``workers``."""
