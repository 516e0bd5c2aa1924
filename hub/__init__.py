"""callhub: the call event hub (API replicas, schema, keyspace, settings)."""
