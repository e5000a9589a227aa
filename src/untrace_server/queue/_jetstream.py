"""JetStream spelled out for ``NatsQueue``: topic ↔ subject names, message ids and
headers, stream layout, no-wait pulls, confirmed acks, and the one place nats-py's
errors become the queue's."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from urllib.parse import quote, unquote

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamManager
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from untrace_server.errors import PayloadTooLarge, QueueFull, QueueUnavailable
from untrace_server.queue.base import DeadLetter, MessageId

log = logging.getLogger("untrace_server.queue.nats")

KEY = "Untrace-Key"
CREATED = "Untrace-Created"  # set when a dead letter is replayed: the original time
ERROR = "Untrace-Error"
ATTEMPTS = "Untrace-Attempts"
DEAD_AT = "Untrace-Dead-At"
ORIGIN = "Untrace-Origin"  # the stream sequence of the message that died

_API = "$JS.API"
_SEP = "\x00"
EMPTY_WAIT_S = 0.05  # how long a pull waits for a first message when none is ready
_FULL_CODES = {10077, 10023}  # store refused (max bytes/messages); insufficient resources
# header values: printable ASCII but '%' and space (a key or an error may hold anything)
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def token(topic: str) -> str:
    """``topic`` as one subject token and consumer name: percent-encoding with ``=`` for
    ``%`` (a ``%`` in a consumer name breaks nats-py's pulls); ``untoken`` reverses it."""
    return quote(topic, safe="-_").replace(".", "%2E").replace("~", "%7E").replace("%", "=")


def untoken(name: str) -> str:
    return unquote(name.replace("=", "%"))


def header(value: str) -> str:
    return quote(value, safe=_HEADER_SAFE)


def unheader(value: str) -> str:
    return unquote(value)


def check_size(nc: Client, key: str, payload: bytes, headers: dict[str, str]) -> None:
    """Refuse what the server would refuse by closing the connection (and failing every
    request in flight): payload and headers over its ``max_payload``. nats-py checks
    the payload alone."""
    size = len(payload) + 12 + sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())
    if size > nc.max_payload:
        raise PayloadTooLarge(
            f"trace {key!r} is {size} bytes with its headers, over the NATS server's "
            f"max_payload of {nc.max_payload}"
        )


def message_id(topic: str, seq: int) -> str:
    return f"{topic}{_SEP}{seq:020d}"  # zero-padded: ids of a topic sort like sequences


def split(mid: MessageId) -> tuple[str, int]:
    topic, _, seq = str(mid).partition(_SEP)
    return topic, int(seq or 0)


def ack_meta(reply: str) -> tuple[int, int, float]:
    """(delivery count, stream sequence, stored at in Unix s) from a JetStream ack
    subject: ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>``,
    or the v2 form with a domain and an account hash after ``ACK``."""
    tokens = reply.split(".")
    at = 2 if len(tokens) == 9 else 4
    return int(tokens[at + 2]), int(tokens[at + 3]), int(tokens[at + 5]) / 1e9


def nak(delay_s: float) -> bytes:
    if delay_s <= 0:
        return b"-NAK"
    return b'-NAK {"delay": %d}' % int(delay_s * 1e9)


def translate(exc: BaseException, url: str) -> BaseException:
    """The one place nats-py's errors become the queue's."""
    if isinstance(exc, nats.js.errors.APIError):
        if exc.err_code in _FULL_CODES:
            return QueueFull(f"NATS JetStream refused the write: {exc.description}")
        return QueueUnavailable(f"NATS JetStream error: {exc.description or exc!r}")
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PayloadTooLarge(f"larger than the NATS server's max_payload: {exc}")
    if isinstance(exc, nats.errors.Error | OSError | TimeoutError):
        return QueueUnavailable(f"NATS unreachable at {url}: {exc!r}")
    return exc


@contextlib.contextmanager
def nats_errors(url: str) -> Iterator[None]:
    try:
        yield
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise translate(exc, url) from None


def stream_configs(
    name: str, *, retention_s: float, budget_bytes: int, replicas: int
) -> list[StreamConfig]:
    """The queue's three streams (see ``untrace_server.queue.nats``)."""
    common = {
        "storage": StorageType.FILE,
        "max_bytes": budget_bytes,
        "discard": DiscardPolicy.NEW,
        "num_replicas": replicas,
    }
    return [
        StreamConfig(
            name=f"{name}-traces",
            subjects=[f"{name}.traces"],
            retention=RetentionPolicy.LIMITS,
            max_age=retention_s,
            duplicate_window=min(120.0, retention_s),  # may not exceed max_age
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=f"{name}-outbox",
            subjects=[f"{name}.outbox.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=f"{name}-dead",
            subjects=[f"{name}.dead.>"],
            retention=RetentionPolicy.LIMITS,
            **common,  # type: ignore[arg-type]
        ),
    ]


async def ensure_stream(jsm: JetStreamManager, config: StreamConfig) -> None:
    """Create the stream, or bring its budget and retention to ``config``'s."""
    assert config.name is not None
    try:
        info = await jsm.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            await jsm.add_stream(config)
            return
        except nats.js.errors.BadRequestError:  # another node made it just now
            info = await jsm.stream_info(config.name)
    have = info.config
    if have.retention != config.retention:
        raise QueueUnavailable(
            f"NATS stream {config.name} exists with {have.retention} retention, "
            f"not {config.retention}: delete it or choose another stream name"
        )
    if (have.max_bytes, have.max_age) != (config.max_bytes, config.max_age):
        log.info("updating NATS stream %s: budget and retention", config.name)
        await jsm.update_stream(have.evolve(max_bytes=config.max_bytes, max_age=config.max_age))


class ConsumerGone(QueueUnavailable):
    """A pull got no answer or an error status: the consumer may have been deleted."""


async def pull(nc: Client, stream: str, consumer: str, batch: int, timeout: float) -> list[Msg]:
    """Up to ``batch`` messages the consumer has ready now, without waiting for more: a
    no-wait pull request ends with a 408 status when it runs out. With ``expires`` too, a
    consumer that has nothing yet answers with the first message that comes within
    ``EMPTY_WAIT_S``: a bare no-wait request can miss a message whose PubAck was just
    received (1 pull in ~5,000 on nats-server 2.9); this cannot."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    out: list[Msg] = []
    try:
        request = {"batch": batch, "no_wait": True, "expires": int(EMPTY_WAIT_S * 1e9)}
        await nc.publish(
            f"{_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}", json.dumps(request).encode(), inbox
        )
        while len(out) < batch:
            try:
                msg = await sub.next_msg(timeout)
            except nats.errors.TimeoutError:
                raise ConsumerGone(f"NATS pull from {stream}/{consumer}: no answer") from None
            if not msg.reply:  # a status: no (more) messages, or the consumer's error
                status = (msg.headers or {}).get("Status", "")
                if status not in ("404", "408"):
                    raise ConsumerGone(f"NATS pull from {stream}/{consumer}: {status}")
                break
            out.append(msg)
    finally:
        await sub.unsubscribe()
    return out


async def answer(nc: Client, replies: Sequence[str], body: bytes, timeout: float) -> None:
    """Send an ack or nak to each reply subject and wait until the server applied it."""
    results = await asyncio.gather(
        *(nc.request(r, body, timeout=timeout) for r in replies), return_exceptions=True
    )
    for result in results:
        # no responders: the consumer is gone, and with it what there was to ack
        if isinstance(result, BaseException) and not isinstance(
            result, nats.errors.NoRespondersError
        ):
            raise result


async def purge(
    nc: Client, stream: str, timeout: float, *, subject: str = "", below: int = 0
) -> int:
    """Purge ``stream`` (only ``subject``, only sequences under ``below``, if given); how
    many messages went (the count nats-py's ``purge_stream`` does not return)."""
    request: dict[str, str | int] = {}
    if subject:
        request["filter"] = subject
    if below:
        request["seq"] = below
    body = json.dumps(request).encode()
    reply = await nc.request(f"{_API}.STREAM.PURGE.{stream}", body, timeout)
    result = json.loads(reply.data)
    if "error" in result:
        raise QueueUnavailable(f"NATS JetStream error: {result['error']}")
    return int(result.get("purged", 0))


async def log_error(exc: Exception) -> None:
    # failed (re)connect attempts come every half second: the disconnect says it once
    level = logging.DEBUG if isinstance(exc, OSError | TimeoutError) else logging.WARNING
    log.log(level, "NATS: %r", exc)


async def log_reconnected() -> None:
    log.info("NATS: reconnected")


def consumer_name(topic: str) -> str:
    """The durable consumer of a topic: its token, hashed when too long for a file name."""
    name = token(topic)
    if len(name) > 128:  # consumer names become file names
        name = "h-" + hashlib.sha256(topic.encode()).hexdigest()[:40]
    return name


def dead_letter(topic: str, m: Msg) -> DeadLetter:
    """A message of the dead stream as a DeadLetter (its story is in the headers)."""
    h = m.headers or {}
    return DeadLetter(
        id=message_id(topic, int(h[ORIGIN])),
        topic=topic,
        key=unheader(h.get(KEY, "")),
        payload=m.data,
        attempts=int(h.get(ATTEMPTS, "1")),
        error=unheader(h.get(ERROR, "")),
        created_at=float(h.get(CREATED, "0")),
        dead_at=float(h.get(DEAD_AT, "0")),
    )
