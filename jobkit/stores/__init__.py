"""Implementations of the :class:`jobkit.store.Store` protocol."""
