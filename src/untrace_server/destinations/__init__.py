"""Destination connectors, found by name through the ``untrace.destinations`` entry points."""
