"""Split a batch to fit a platform's limits and collect per-item outcomes.

``deliver`` groups items by count and bytes, sends each group, and on HTTP 413 sends the
two halves instead (down to a single item, which is then a permanent failure). When a
group fails with a retryable error the groups not yet sent are not tried: the platform
is unwell, and they share the error. The outcome is a ``BatchResult`` when everything
went through, else the one error, or ``PartialDeliveryError`` naming the failed indexes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from untrace_server.destinations._http import PayloadTooLarge
from untrace_server.destinations.base import BatchResult
from untrace_server.errors import (
    DeliveryError,
    PartialDeliveryError,
    PermanentError,
    RetryableError,
)

__all__ = ["SendGroup", "deliver", "split"]

# Sends the items at these batch indexes. May raise PartialDeliveryError whose ``failed``
# keys are positions in the list it was given.
SendGroup = Callable[[list[int]], Awaitable[None]]


def split(
    indexes: Sequence[int], sizes: Sequence[int], *, max_count: int, max_bytes: int
) -> list[list[int]]:
    """Greedy groups of at most ``max_count`` items and ``max_bytes`` bytes (an item
    bigger than ``max_bytes`` travels alone)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index in indexes:
        size = sizes[index]
        if current and (len(current) >= max_count or used + size > max_bytes):
            groups.append(current)
            current, used = [], 0
        current.append(index)
        used += size
    if current:
        groups.append(current)
    return groups


async def deliver(
    sizes: Sequence[int],
    send: SendGroup,
    *,
    max_count: int,
    max_bytes: int,
    failed: dict[int, DeliveryError] | None = None,
    concurrency: int = 1,
) -> BatchResult:
    """``failed`` may come pre-filled with items that could not even be encoded."""
    failed = dict(failed or {})
    todo = [i for i in range(len(sizes)) if i not in failed]
    stop: list[RetryableError] = []
    gate = asyncio.Semaphore(concurrency)

    async def attempt(group: list[int]) -> None:
        if stop:
            failed.update(dict.fromkeys(group, stop[0]))
            return
        try:
            await send(group)
        except PayloadTooLarge as exc:
            if len(group) == 1:
                failed[group[0]] = PermanentError(f"{exc} even for a single trace")
                return
            half = len(group) // 2
            await attempt(group[:half])
            await attempt(group[half:])
        except PartialDeliveryError as exc:
            failed.update({group[pos]: err for pos, err in exc.failed.items()})
        except RetryableError as exc:
            stop.append(exc)
            failed.update(dict.fromkeys(group, exc))
        except DeliveryError as exc:
            failed.update(dict.fromkeys(group, exc))

    async def guarded(group: list[int]) -> None:
        async with gate:
            await attempt(group)

    groups = split(todo, sizes, max_count=max_count, max_bytes=max_bytes)
    await asyncio.gather(*(guarded(g) for g in groups))
    return outcome(len(sizes), failed)


def outcome(total: int, failed: dict[int, DeliveryError]) -> BatchResult:
    if not failed:
        return BatchResult(delivered=total)
    errors = list(failed.values())
    if len(failed) == total:
        if all(isinstance(e, RetryableError) for e in errors):
            waits = [e.retry_after for e in errors if isinstance(e, RetryableError)]
            known = [w for w in waits if w is not None]
            raise RetryableError(str(errors[0]), retry_after=max(known) if known else None)
        if all(isinstance(e, PermanentError) for e in errors):
            raise PermanentError("; ".join(dict.fromkeys(str(e) for e in errors)))
    raise PartialDeliveryError(
        f"{len(failed)} of {total} traces failed: {errors[0]}", failed=dict(sorted(failed.items()))
    )
