"""containerlib: Linux containers in your own Python process, no daemon."""

__all__: list[str] = []
