"""callhub workers: the write side (publisher and commit script)."""
