"""Untrace SDK: capture LLM calls and your own spans, send them to an Untrace server.

    import untrace

    untrace.init(api_key="ut_...")          # or UNTRACE_API_KEY / UNTRACE_BASE_URL
    untrace.instrument()                    # openai / anthropic, if installed

    with untrace.span("rag", kind="chain") as span:
        ...
        span.set_output(answer)

Tracing never blocks or breaks the application: traces wait in a bounded queue, a
background thread sends them in batches, and anything dropped is counted
(``client.stats``).
"""

from ._client import Untrace, flush, get_client, init, shutdown, trace
from ._config import Config
from ._context import current_span as _current_span
from ._instrument import instrument, uninstrument
from ._observe import observe
from ._span import Span, span

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Span",
    "Untrace",
    "__version__",
    "current_span",
    "flush",
    "get_client",
    "init",
    "instrument",
    "observe",
    "shutdown",
    "span",
    "trace",
    "uninstrument",
]


def current_span() -> Span | None:
    """The span of the enclosing ``with span(...)`` / ``@observe`` call, if any."""
    return _current_span.get()


# Make the public classes look like they live here (as httpx does), for reprs and docs.
for _name in ("Config", "Span", "Untrace"):
    globals()[_name].__module__ = "untrace"
del _name
