"""Running one call through a dialog: the spec, the runtime, the media leg, the clock, hooks."""
