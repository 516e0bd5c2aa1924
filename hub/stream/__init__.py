"""The stream engine: live events routed in memory to subscribers,
catch-up from Redis, SSE frames."""
