"""The replica's HTTP surface: routes, keys, CORS, query parsing, OpenAPI, logging, dashboard."""
