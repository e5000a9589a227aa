"""The fleet queue on NATS JetStream: durable pull consumers shared by every worker, so
API pods and workers scale out independently.

Layout, for a stream name ``N`` (default ``untrace``; all file storage):
- ``N-traces`` holds the ``traces`` topic on subject ``N.traces``: limits retention,
  ``max_age`` = the retention, so acked traces stay for replay and age out;
- ``N-outbox`` holds every other topic on ``N.outbox.<topic>``: work-queue retention, so
  an acked delivery is deleted (like Redis's XACK + XDEL);
- ``N-dead`` holds dead letters on ``N.dead.<topic>``: limits retention, no age limit.
A topic becomes one subject token (and consumer name) by encoding every byte outside
``[A-Za-z0-9_-]`` as ``=XX`` (``deliver.acme/hook`` → ``deliver=2Eacme=2Fhook``):
deterministic and reversible. Each stream's ``max_bytes`` is the queue budget, with
discard-new, so a full stream refuses the write (``QueueFull``); a full ``N-traces``
first drops its oldest acked traces (below the consumer's ack floor) to make room.

Mapping of the Queue protocol:
- publish → one JetStream publish per item, all awaited for their PubAck; the key rides
  in the ``Untrace-Key`` header. No ``Nats-Msg-Id``: the same trace id may be sent
  again on purpose. A batch that fails half-way deletes what it wrote (best effort);
- lease → a no-wait pull (``_jetstream.pull``) of a durable consumer per topic
  (explicit ack, named after the topic, shared by every node); attempts = JetStream's
  delivery count. The consumer's ``ack_wait`` is the visibility of the lease that
  created it; a lease asking for another visibility sets it per message with
  ``-NAK {"delay": visibility}`` (a delayed NAK hides a message until then, and it can
  still be acked);
- ack → ``+ACK``, nack(delay) → ``-NAK {"delay": …}``, both waiting for the server's
  confirmation (ack, nack and dead take ids this node leased; an outbox message it did
  not lease is deleted from the stream instead of acked);
- dead → copy to ``N.dead.<topic>`` with the error, attempts and the original id (the
  dead letter's id), then ack the original;
- list/replay/purge dead letters → read through a short-lived ephemeral consumer,
  replay republishes (attempts start again) and deletes the letter.
Not kept: acked deliveries (deleted on ack), and no index by trace id, so trace status
and replay-based backfill (``trace_status``, ``list_retained``) answer 501 here.
Durability is JetStream's: a PubAck means the message is stored (on ``replicas`` nodes
of a cluster; give ``?replicas=3`` in the URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, Sequence

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, JetStreamManager
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from untrace_server.errors import ConfigError, QueueFull, QueueUnavailable
from untrace_server.observability import metrics
from untrace_server.queue import _jetstream as wire
from untrace_server.queue._jetstream import (
    ATTEMPTS,
    CREATED,
    DEAD_AT,
    ERROR,
    KEY,
    ORIGIN,
    header,
    log,
    nats_errors,
    split,
    token,
    unheader,
)
from untrace_server.queue.base import TRACES_TOPIC, DeadLetter, Message, MessageId, QueueStats

__all__ = ["NatsQueue"]

_PAGE = 500  # dead letters read per pull


class NatsQueue:
    supports_status = False  # acked deliveries are deleted: no trace status (501)

    def __init__(
        self,
        url: str,
        *,
        stream: str = "untrace",
        retention_s: float = 7 * 86400,
        budget_bytes: int = 1 << 30,
        replicas: int = 1,
        timeout_s: float = 5.0,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stream):
            raise ConfigError(f"NATS stream name {stream!r}: use letters, digits, - and _")
        self.url = url
        self.servers = [s.strip() for s in url.split(",") if s.strip()]
        self.stream = stream
        self.retention_s = retention_s
        self.budget_bytes = budget_bytes
        self.replicas = replicas
        self.timeout_s = timeout_s
        self.traces_stream = f"{stream}-traces"
        self.outbox_stream = f"{stream}-outbox"
        self.dead_stream = f"{stream}-dead"
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._jsm: JetStreamManager | None = None
        self._ack_wait: dict[str, float] = {}  # topic → its consumer's ack_wait
        # message id → (ack subject, attempts, lease end) of what this node leased
        self._leased: dict[str, tuple[str, int, float]] = {}

    # -- names -------------------------------------------------------------------------

    @property
    def streams(self) -> tuple[str, str, str]:
        return (self.traces_stream, self.outbox_stream, self.dead_stream)

    def _stream_of(self, topic: str) -> str:
        return self.traces_stream if topic == TRACES_TOPIC else self.outbox_stream

    def _subject(self, topic: str) -> str:
        if topic == TRACES_TOPIC:
            return f"{self.stream}.traces"
        return f"{self.stream}.outbox.{token(topic)}"

    def _dead_subject(self, topic: str) -> str:
        return f"{self.stream}.dead.{token(topic)}"

    def _topic_of(self, subject: str) -> str:
        kind, _, name = subject.removeprefix(f"{self.stream}.").partition(".")
        return TRACES_TOPIC if kind == "traces" else wire.untoken(name)

    # -- connection --------------------------------------------------------------------

    def _check(self) -> None:
        """Fail fast while not started or reconnecting (rather than time out)."""
        if self._nc is None or self._js is None or self._jsm is None:
            raise QueueUnavailable("queue is not running")
        if not self._nc.is_connected:
            raise QueueUnavailable(f"NATS unreachable at {self.url}: reconnecting")

    @property
    def nc(self) -> Client:
        self._check()
        assert self._nc is not None
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        self._check()
        assert self._js is not None
        return self._js

    @property
    def jsm(self) -> JetStreamManager:
        self._check()
        assert self._jsm is not None
        return self._jsm

    async def start(self) -> None:
        if self._nc is not None:
            return
        nc = Client()
        try:
            await nc.connect(
                self.servers,
                name="untrace",
                connect_timeout=2,
                reconnect_time_wait=1,
                max_reconnect_attempts=1,  # the first connect fails fast
                error_cb=wire.log_error,
                disconnected_cb=self._disconnected,
                reconnected_cb=wire.log_reconnected,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            await nc.close()
            raise QueueUnavailable(f"NATS unreachable at {self.url}: {exc!r}") from None
        nc.options["max_reconnect_attempts"] = -1  # once running, reconnect forever
        self._nc = nc
        self._js, self._jsm = nc.jetstream(timeout=self.timeout_s), nc.jsm(timeout=self.timeout_s)
        try:
            with nats_errors(self.url):
                for config in wire.stream_configs(
                    self.stream,
                    retention_s=self.retention_s,
                    budget_bytes=self.budget_bytes,
                    replicas=self.replicas,
                ):
                    await wire.ensure_stream(self.jsm, config)
        except BaseException:
            await self.close()
            raise

    async def _disconnected(self) -> None:
        if self._nc is not None:  # not when closing
            log.warning("NATS: disconnected from %s, reconnecting", self.url)

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc, self._js, self._jsm = self._nc, None, None, None
            self._ack_wait.clear()
            self._leased.clear()
            await nc.close()

    async def _ensure_consumer(self, topic: str, visibility_s: float) -> float:
        """The topic's durable consumer (made on first use); returns its ack_wait."""
        ack_wait = self._ack_wait.get(topic)
        if ack_wait is not None:
            return ack_wait
        jsm = self.jsm
        stream, name = self._stream_of(topic), wire.consumer_name(topic)
        try:
            info = await jsm.consumer_info(stream, name)
        except nats.js.errors.NotFoundError:
            config = ConsumerConfig(
                durable_name=name,
                filter_subject=self._subject(topic),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=visibility_s,
                max_deliver=-1,
                max_ack_pending=-1,
            )
            try:
                info = await jsm.add_consumer(stream, config)
            except nats.js.errors.BadRequestError:  # another node made it just now
                info = await jsm.consumer_info(stream, name)
        self._ack_wait[topic] = ack_wait = float(info.config.ack_wait or visibility_s)
        return ack_wait

    # -- the protocol ------------------------------------------------------------------

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[MessageId]:
        if not items:
            return []
        with nats_errors(self.url):
            try:
                seqs = await self._append(topic, items)
            except QueueFull:
                if topic != TRACES_TOPIC or not await self._make_room():
                    raise
                seqs = await self._append(topic, items)
        return [wire.message_id(topic, seq) for seq in seqs]

    async def _append(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Publish all items, each awaited for its PubAck; if one fails, delete the ones
        written (best effort) and raise its error."""
        js, subject = self.js, self._subject(topic)
        headers = [{KEY: header(key)} for key, _ in items]
        for (key, payload), h in zip(items, headers, strict=True):
            wire.check_size(self.nc, key, payload, h)
        acks = await asyncio.gather(
            *(
                js.publish(subject, payload, headers=h)
                for (_, payload), h in zip(items, headers, strict=True)
            ),
            return_exceptions=True,
        )
        failed = [a for a in acks if isinstance(a, BaseException)]
        if not failed:
            return [a.seq for a in acks if not isinstance(a, BaseException)]
        jsm, stream = self.jsm, self._stream_of(topic)
        written = [a.seq for a in acks if not isinstance(a, BaseException)]
        await asyncio.gather(*(jsm.delete_msg(stream, s) for s in written), return_exceptions=True)
        raise wire.translate(failed[0], self.url)

    async def _make_room(self) -> bool:
        """Drop the oldest acked traces from a full traces stream — about an eighth of the
        budget, fewer if fewer are acked; whether anything was dropped."""
        jsm = self.jsm
        try:
            floor = await jsm.consumer_info(self.traces_stream, wire.consumer_name(TRACES_TOPIC))
        except nats.js.errors.NotFoundError:
            return False
        acked_to = floor.ack_floor.stream_seq if floor.ack_floor else 0
        state = (await jsm.stream_info(self.traces_stream)).state
        if not acked_to or acked_to < state.first_seq or not state.messages:
            return False
        average = max(1, state.bytes // state.messages)
        upto = min(acked_to + 1, state.first_seq + self.budget_bytes // 8 // average + 1)
        dropped = await wire.purge(self.nc, self.traces_stream, self.timeout_s, below=upto)
        metrics.QUEUE_EVICTED.inc(dropped)
        return dropped > 0

    async def lease(self, topic: str, max_items: int, visibility_s: float) -> list[Message]:
        if max_items <= 0:
            return []
        with nats_errors(self.url):
            ack_wait = await self._ensure_consumer(topic, visibility_s)
            pulled = await self._pull(self._stream_of(topic), wire.consumer_name(topic), max_items)
            if pulled and abs(ack_wait - visibility_s) > 0.001:
                await self._answer([m.reply for m in pulled], wire.nak(visibility_s))
        until = time.time() + visibility_s
        messages = []
        for m in pulled:
            attempts, seq, stored = wire.ack_meta(m.reply)
            headers = m.headers or {}
            mid = wire.message_id(topic, seq)
            self._leased[mid] = (m.reply, attempts, until)
            created = float(headers[CREATED]) if CREATED in headers else stored
            key = unheader(headers.get(KEY, ""))
            messages.append(Message(mid, topic, m.data, attempts, created, key))
        if len(self._leased) > 100_000:
            self._forget_expired()
        return sorted(messages, key=lambda m: str(m.id))

    def _forget_expired(self) -> None:
        """Drop leases that ended long ago (taken over by another node, most likely)."""
        cutoff = time.time() - 600
        self._leased = {k: v for k, v in self._leased.items() if v[2] > cutoff}

    async def _pull(self, stream: str, consumer: str, batch: int) -> list[Msg]:
        try:
            return await wire.pull(self.nc, stream, consumer, batch, self.timeout_s)
        except wire.ConsumerGone:
            self._ack_wait.clear()  # deleted under us? made again by the next lease
            raise

    async def _answer(self, replies: Sequence[str], body: bytes) -> None:
        await wire.answer(self.nc, replies, body, self.timeout_s)

    def _take(self, ids: Sequence[MessageId]) -> tuple[list[tuple[str, int, str]], list[str]]:
        """Split ids into (id, attempts, ack subject) of this node's leases and the rest."""
        mine, others = [], []
        for mid in ids:
            leased = self._leased.pop(str(mid), None)
            if leased is None:
                others.append(str(mid))
            else:
                mine.append((str(mid), leased[1], leased[0]))
        return mine, others

    async def ack(self, ids: Sequence[MessageId]) -> None:
        mine, others = self._take(ids)
        with nats_errors(self.url):
            await self._answer([reply for _, _, reply in mine], b"+ACK")
            await self._delete_unleased(others)

    async def _delete_unleased(self, ids: Sequence[str]) -> None:
        """Settle messages another node leased: an outbox message is deleted; a trace
        (retained) cannot be acked from here and comes back after its lease."""
        jsm = self.jsm
        for mid in ids:
            topic, seq = split(mid)
            if topic == TRACES_TOPIC:
                log.warning("cannot ack trace %s: leased by another node", seq)
                continue
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await jsm.delete_msg(self.outbox_stream, seq)

    async def nack(self, ids: Sequence[MessageId], delay_s: float) -> None:
        mine, _ = self._take(ids)  # the others come back when their lease ends
        with nats_errors(self.url):
            await self._answer([reply for _, _, reply in mine], wire.nak(delay_s))

    async def dead(self, ids: Sequence[MessageId], error: str) -> None:
        mine, others = self._take(ids)
        attempts = {mid: n for mid, n, _ in mine}
        now = str(time.time())
        jsm = self.jsm
        js = self.js
        with nats_errors(self.url):
            for mid in [m for m, _, _ in mine] + others:
                topic, seq = split(mid)
                try:
                    original = await jsm.get_msg(self._stream_of(topic), seq)
                except nats.js.errors.NotFoundError:
                    continue  # already gone (aged out, or settled by someone else)
                headers = original.headers or {}
                stored = original.time.timestamp() if original.time else time.time()
                letter = {
                    KEY: headers.get(KEY, ""),
                    CREATED: headers.get(CREATED, str(stored)),
                    ERROR: header(error[:4000])[:4000],
                    ATTEMPTS: str(attempts.get(mid, 1)),
                    DEAD_AT: now,
                    ORIGIN: str(seq),
                }
                wire.check_size(self.nc, unheader(letter[KEY]), original.data or b"", letter)
                await js.publish(self._dead_subject(topic), original.data or b"", headers=letter)
            await self._answer([reply for _, _, reply in mine], b"+ACK")
            await self._delete_unleased(others)

    async def _dead_counts(self) -> dict[str, int]:
        info = await self.jsm.stream_info(self.dead_stream, subjects_filter=">")
        return {self._topic_of(s): n for s, n in (info.state.subjects or {}).items() if n}

    async def _letters(self, topic: str) -> AsyncGenerator[tuple[int, DeadLetter]]:
        """The dead letters of ``topic``, oldest first, as (stream sequence, letter), read
        through an ephemeral consumer (deleted when the iterator is closed: use
        ``contextlib.aclosing``)."""
        info = await self.jsm.add_consumer(
            self.dead_stream,
            ConsumerConfig(
                filter_subject=self._dead_subject(topic),
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=60.0,
                mem_storage=True,
            ),
        )
        name = str(info.name)
        try:
            while page := await self._pull(self.dead_stream, name, _PAGE):
                for m in page:
                    yield wire.ack_meta(m.reply)[1], wire.dead_letter(topic, m)
                if len(page) < _PAGE:
                    return
        finally:
            if self._nc is not None and self._nc.is_connected:
                with contextlib.suppress(nats.errors.Error):
                    await self.jsm.delete_consumer(self.dead_stream, name)

    async def list_dead(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        with nats_errors(self.url):
            topics = [topic] if topic is not None else sorted(await self._dead_counts())
            for name in topics:
                async with contextlib.aclosing(self._letters(name)) as letters:
                    async for _, letter in letters:
                        if len(out) >= limit:
                            return out
                        out.append(letter)
        return out

    async def replay_dead(
        self, topic: str | None = None, ids: Sequence[MessageId] | None = None
    ) -> int:
        wanted = {str(i) for i in ids} if ids is not None else None
        count = 0
        jsm = self.jsm
        js = self.js
        with nats_errors(self.url):
            topics = [topic] if topic is not None else sorted(await self._dead_counts())
            for name in topics:
                async with contextlib.aclosing(self._letters(name)) as letters:
                    async for seq, d in letters:
                        if wanted is not None and str(d.id) not in wanted:
                            continue
                        headers = {KEY: header(d.key), CREATED: str(d.created_at)}
                        await js.publish(self._subject(name), d.payload, headers=headers)
                        await jsm.delete_msg(self.dead_stream, seq)
                        count += 1
        return count

    async def purge_dead(self, topic: str, ids: Sequence[MessageId] | None = None) -> int:
        """Delete dead letters of ``topic`` (only ``ids`` — as ``list_dead`` gives them —
        if given); returns how many."""
        with nats_errors(self.url):
            if ids is None:
                return await wire.purge(
                    self.nc, self.dead_stream, self.timeout_s, subject=self._dead_subject(topic)
                )
            wanted = {str(i) for i in ids}
            async with contextlib.aclosing(self._letters(topic)) as letters:
                gone = [seq async for seq, d in letters if str(d.id) in wanted]
            for seq in gone:
                await self.jsm.delete_msg(self.dead_stream, seq)
        return len(gone)

    async def wait(self, topic: str, timeout: float) -> None:
        await asyncio.sleep(min(timeout, 0.05))

    async def stats(self) -> QueueStats:
        jsm = self.jsm
        with nats_errors(self.url):
            traces = await jsm.stream_info(self.traces_stream)
            outbox = await jsm.stream_info(self.outbox_stream, subjects_filter=">")
            dead = await jsm.stream_info(self.dead_stream, subjects_filter=">")
            pending = {self._topic_of(s): n for s, n in (outbox.state.subjects or {}).items()}
            try:
                ci = await jsm.consumer_info(self.traces_stream, wire.consumer_name(TRACES_TOPIC))
                pending[TRACES_TOPIC] = (ci.num_pending or 0) + (ci.num_ack_pending or 0)
            except nats.js.errors.NotFoundError:
                if traces.state.messages:
                    pending[TRACES_TOPIC] = traces.state.messages
        dead_counts = {self._topic_of(s): n for s, n in (dead.state.subjects or {}).items() if n}
        # each stream has the budget as its max_bytes: report the fullest
        used = max(traces.state.bytes, outbox.state.bytes, dead.state.bytes)
        return QueueStats(pending, dead_counts, used, self.budget_bytes)

    async def ping(self) -> None:
        with nats_errors(self.url):
            await self.jsm.account_info()
