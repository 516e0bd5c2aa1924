"""Simulated calls: the worker that runs them, scripted callers, a simulated back office."""
