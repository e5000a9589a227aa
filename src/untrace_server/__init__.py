"""Untrace server: capture LLM calls as traces and deliver them to every destination."""

__version__ = "0.1.0"
