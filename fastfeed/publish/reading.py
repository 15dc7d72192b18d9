"""Reading a stream back in sequence order: reconcile (ids only) and ``export --from-nats``.

An ephemeral pull consumer with no acks, fetched in batches up to the stream's last sequence
as of the start. Pull, not nats-py's ordered push consumer: that one's flow control stalled
for seconds at a time in our tests (a reply the client answers only when next_msg is called).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastfeed import defaults
from fastfeed.errors import FastfeedError

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import StreamInfo

__all__ = ["FETCH_BATCH", "StreamReadError", "read_stream", "stream_info"]

T = TypeVar("T")

FETCH_BATCH = 4096  # messages per pull request: few round trips, bounded client memory


class StreamReadError(FastfeedError):
    """The stream stopped answering before its last message was read."""


async def stream_info(js: JetStreamContext, stream: str, **kwargs: Any) -> StreamInfo:
    """``js.stream_info``, asked again while the stream has no leader (an election: 503).

    Raises:
        StreamReadError: still no answer after PUBLISH_API_RETRY_S.
        nats.js.errors.NotFoundError: there is no such stream.
    """
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import ServiceUnavailableError

    return await _answered(
        lambda: js.stream_info(stream, **kwargs), stream, (ServiceUnavailableError, NatsTimeout)
    )


async def _answered(
    call: Callable[[], Awaitable[T]], stream: str, transient: tuple[type[Exception], ...]
) -> T:
    """``call()``, made again with backoff while it fails with ``transient`` errors (a leader
    election answers 503 for 5-7 s), for at most PUBLISH_API_RETRY_S.

    Raises:
        StreamReadError: still failing after PUBLISH_API_RETRY_S.
    """
    deadline = time.monotonic() + defaults.PUBLISH_API_RETRY_S
    delay = defaults.PUBLISH_BACKOFF_INITIAL_S
    while True:
        try:
            return await call()
        except transient as exc:
            if time.monotonic() + delay > deadline:
                raise StreamReadError(
                    f"stream {stream} did not answer for {defaults.PUBLISH_API_RETRY_S:g} s"
                    f" ({type(exc).__name__})"
                ) from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, defaults.PUBLISH_BACKOFF_CAP_S)


async def read_stream(
    js: JetStreamContext,
    stream: str,
    subject: str,
    first_seq: int,
    last_seq: int,
    *,
    headers_only: bool = False,
) -> AsyncIterator[Msg]:
    """Messages on ``subject`` (wildcards allowed) with ``first_seq <= seq <= last_seq``.

    Raises:
        StreamReadError: nothing arrived for PUBLISH_RECONCILE_IDLE_S before ``last_seq``.
    """
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import ServiceUnavailableError

    if last_seq < first_seq:
        return
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, first_seq),
        headers_only=headers_only,
        inactive_threshold=defaults.PUBLISH_RECONCILE_IDLE_S * 2,
    )
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    try:
        while True:
            try:
                # A restarted node or a new leader answers a pull with 503 for a while.
                batch = await _answered(
                    lambda: sub.fetch(FETCH_BATCH, timeout=defaults.PUBLISH_RECONCILE_IDLE_S),
                    stream,
                    (ServiceUnavailableError,),
                )
            except (NatsTimeout, TimeoutError):
                raise StreamReadError(
                    f"stream {stream} sent nothing for {defaults.PUBLISH_RECONCILE_IDLE_S:g} s"
                    f" before seq {last_seq}"
                ) from None
            for msg in batch:
                meta = msg.metadata
                if meta.sequence.stream > last_seq:
                    return
                yield msg
                if meta.sequence.stream == last_seq or meta.num_pending == 0:
                    return
    finally:
        # The consumer expires by itself (inactive_threshold): a cluster too busy to answer
        # the unsubscribe must not replace the error (or the end) of the read with its own.
        with contextlib.suppress(NatsTimeout, TimeoutError):
            await sub.unsubscribe()
