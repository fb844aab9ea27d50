"""Pipelined requests on a :class:`~binrpc.client.Client`'s connection (``Client.pipeline``).

Requests are sent ahead of their replies, a window at a time, on the client's one connection
(stream or datagram); replies are matched by cookie and handed out strictly in request order.
The socket is non-blocking and driven with ``poll``, so sending and receiving never wait for
each other (no deadlock whatever the sizes).

How much is in flight: at most ``window`` requests, and no more than ~64 KiB of replies by the
largest reply seen so far (8 requests until one is seen; 4 on unix datagram sockets, whose
queues hold 10 datagrams; on datagram sockets, no more than half their receive buffer). The
ctl module writes each reply once and waits at most 10 ms for room: replies must never pile
up unread beyond what the kernel buffers hold while the caller is busy with earlier results
(a blocked stdout, say), or Kamailio truncates them.

Failures (the rules ``binrpc --batch`` documents):

* a request is never sent twice once a byte of it may have reached the server;
* when a connection fails (closed by the server, reset, read timeout on a stream, invalid
  reply), every request in flight on it is answered by the error: a transport error goes to
  each of them as is; an invalid reply (a :class:`~binrpc.RemoteProtocolError`) to the oldest,
  and :class:`ReplyLost` to the others. Requests not yet sent go on a new connection;
* a request half sent when a stream fails gets :class:`SendError` (half a request is never
  executed), as a ``Client`` call would;
* on a datagram socket a read timeout only ends the requests that waited that long (late
  replies are recognised by their cookie and dropped); an ICMP error (UDP "connection
  refused") ends every request in flight. Datagrams get lost: without a read timeout each
  request still has ``datagram_deadline`` seconds (:data:`DATAGRAM_REPLY_DEADLINE`) for its
  reply, and the replies in flight are kept within half the socket's receive buffer.

This module is imported on the first ``pipeline()`` call (start-up time of one-shot calls).
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import time

from .._errors import BinrpcError, LocalProtocolError, TransportError
from ._core import DATAGRAM_REPLY_DEADLINE, Reply, check_seconds
from ._errors import RECEIVE, SEND, closed_error, timeout_error, transport_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Final, Protocol

    from .._values import Value
    from ._link import Link
    from ._protocol import ClientConnection

    class Client(Protocol):
        """What a pipeline takes from a ``Client`` (structurally: no import of ``_sync``)."""

        connection: ClientConnection
        link: Link


__all__ = ["DATAGRAM_REPLY_DEADLINE", "DEFAULT_WINDOW", "Pipeline", "open_pipeline"]

DEFAULT_WINDOW: Final = 64
"""Requests in flight at most (``Client.pipeline``'s default)."""

_REPLY_BUDGET: Final = 64 * 1024
"""Bytes of replies allowed in flight, by the estimate below: well under what the kernel
buffers of a unix stream (208 KiB) or loopback TCP connection hold. On a datagram socket, at
most half its receive buffer (``SO_RCVBUF``, which Linux reports doubled for its bookkeeping):
replies that do not fit there are dropped by the kernel."""

_REPLY_OVERHEAD: Final = 512
"""Kernel bookkeeping per queued reply (an skb), counted against the budget."""

_FIRST_ESTIMATE: Final = 8192
"""Reply size assumed until one has been seen (a first window of 8)."""

_UNIXD_WINDOW: Final = 4
"""In flight at most on unix datagram sockets: Linux queues 10 datagrams per socket by default
(``net.unix.max_dgram_qlen``) and the ctl module splits big replies into several."""

_BATCH_BYTES: Final = 64 * 1024
"""Requests joined into one ``send`` at most (at least one request)."""

_POLLIN: Final = select.POLLIN
_POLLOUT: Final = select.POLLOUT
_RETRY_SEND: Final = (errno.EPIPE, errno.ECONNRESET)


class _Slot:
    """One request: its cookie and packet, then its result (a Reply or an error)."""

    __slots__ = ("cookie", "deadline", "packet", "result", "start")

    def __init__(self, cookie: int, packet: bytes, result: Reply | BinrpcError | None) -> None:
        self.cookie = cookie
        self.packet = packet
        self.result = result
        self.deadline: float | None = None  # reply due by (monotonic), once fully sent
        self.start = 0  # offset of the packet in the stream batch being sent


def open_pipeline(
    client: Client,
    requests: Iterable[tuple[str, Sequence[Value]]],
    window: int = DEFAULT_WINDOW,
    on_wait: Callable[[], object] | None = None,
    datagram_deadline: float | None = DATAGRAM_REPLY_DEADLINE,
) -> Pipeline:
    """The :class:`Pipeline` of ``requests`` on ``client``'s connection and socket (what
    ``Client.pipeline`` iterates; ``binrpc --batch`` takes its results in chunks)."""
    return Pipeline(
        client.connection,
        client.link,
        requests,
        window=window,
        on_wait=on_wait,
        datagram_deadline=datagram_deadline,
    )


class Pipeline:
    """The state of one pipelined run over ``conn`` (the sans-I/O connection: cookies,
    encoding, reply matching, the failure rule) and ``link`` (its socket, reopened when it
    fails); iterate :meth:`results` or :meth:`chunks`.

    Raises:
        ValueError: ``window`` < 1; TypeError, ValueError: a bad ``datagram_deadline``.
    """

    def __init__(
        self,
        conn: ClientConnection,
        link: Link,
        requests: Iterable[tuple[str, Sequence[Value]]],
        *,
        window: int = DEFAULT_WINDOW,
        on_wait: Callable[[], object] | None = None,
        datagram_deadline: float | None = DATAGRAM_REPLY_DEADLINE,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.conn = conn
        self.link = link
        self.on_wait = on_wait
        self.requests = iter(requests)
        self.exhausted = False
        self.window = window
        address = link.config.address
        self.stream = address.is_stream
        if address.proto == "unixd":
            self.window = min(window, _UNIXD_WINDOW)
        self.address = str(address)
        self.read_timeout = link.config.timeouts.read
        if not self.stream and self.read_timeout is None:
            # a lost datagram must not make the pipeline wait forever
            self.read_timeout = check_seconds(datagram_deadline, "datagram_deadline")
        self.budget = _REPLY_BUDGET  # bytes of replies in flight (datagrams: see _fit_window)
        self.sized: object = None  # the datagram socket the budget was measured on
        self.slots: list[_Slot] = []  # not yet handed out, in order: [head:]
        self.head = 0
        self.next_send = 0  # slots[next_send:] are not sent yet
        self.inflight: dict[int, _Slot] = {}  # cookie -> slot, in sending order
        self.sending = False  # a batch is being sent
        self.out: memoryview | None = None  # stream: the bytes of that batch
        self.out_slots: list[_Slot] = []  # the slots of the batch being sent
        self.out_pos = 0  # stream: bytes of `out` sent; datagrams: slots of out_slots sent
        self.send_deadline: float | None = None
        self.fresh = False  # the connection was opened for the batch being sent
        self.draining = False  # a send failed: read what comes, send nothing more
        self.largest = 0  # largest reply seen (+ overhead)
        self.poller: select.poll | None = None
        self.polled: object = None  # the socket registered with the poller
        self.poll_mask = 0

    # -- the loop --------------------------------------------------------------------------
    def results(self) -> Iterator[Reply | BinrpcError]:
        """Each request's result, in order."""
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list[Reply | BinrpcError]]:
        """The results in order, in lists of those ready at once (less overhead per result)."""
        link = self.link
        slots = self.slots
        try:
            if not self.stream:
                self.conn.discard_buffered()  # like each call: drop a partial stray datagram
            else:
                link.stale()  # a reused stream the server closed: a new one
            while True:
                self._refill()
                if self.sending or self.next_send < len(slots):
                    self._send()
                head = self.head
                end = head
                total = len(slots)
                while end < total and slots[end].result is not None:
                    end += 1
                if end > head:
                    self.head = end
                    yield [slot.result for slot in slots[head:end]]  # type: ignore[misc]
                    if end > 256:
                        del slots[:end]
                        self.next_send -= end
                        self.head = 0
                if self.draining and not self.inflight:
                    # every reply came before the close: the connection is dead all the same
                    self.draining = False
                    link.close()
                if self.head == len(slots):
                    if self.exhausted:
                        return
                    continue
                if self.inflight:
                    self._wait()
        finally:
            if self.inflight or self.sending:
                self._abandon()

    def _abandon(self) -> None:
        """The loop was left half-way (the caller stopped, an exception): no reply in flight
        is read (a stream is closed, the cookies of datagrams are abandoned)."""
        if self.stream:
            self.link.close()
        else:
            for cookie in self.inflight:
                self.conn.abandon(cookie)
        self.inflight.clear()
        self.sending = False
        self.out = None

    def _limit(self) -> int:
        estimate = self.largest or _FIRST_ESTIMATE
        return max(1, min(self.window, self.budget // estimate))

    def _fit_window(self, sock: _socket.socket) -> None:
        """Datagrams: replies in flight must fit the receive buffer (the kernel drops what
        does not); Linux reports SO_RCVBUF doubled, half of it is for its bookkeeping."""
        self.sized = sock
        rcvbuf = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF)
        self.budget = max(1, min(_REPLY_BUDGET, rcvbuf // 2))

    def _refill(self) -> None:
        """Take requests from the iterable until the window is full (encoded at once)."""
        if self.exhausted:
            return
        slots = self.slots
        limit = self._limit()
        requests = self.requests
        new_cookie = self.conn.new_cookie
        encode = self.conn.encode
        inflight = self.inflight
        # the window counts what is in flight or waiting to be sent (results received
        # behind a slow one do not count, up to another window's worth)
        while (
            len(slots) - self.next_send + len(inflight) < limit
            and len(slots) - self.head < 2 * limit
        ):
            try:
                method, params = next(requests)
            except StopIteration:
                self.exhausted = True
                return
            cookie = new_cookie()
            try:
                packet = encode(method, params, cookie)  # TypeError if wrong
            except LocalProtocolError as exc:
                slots.append(_Slot(cookie, b"", exc))
            else:
                slots.append(_Slot(cookie, packet, None))

    # -- sending ---------------------------------------------------------------------------
    def _send(self) -> None:
        if not self.sending and not self._start_batch():
            return
        link = self.link
        sock = link.sock
        assert sock is not None
        done = self._send_stream(sock) if self.stream else self._send_datagrams(sock)
        if done is None:
            return  # the send failed (_send_failed has dealt with it)
        link.used = True
        timeout = self.read_timeout
        if done:
            if timeout is not None and self.stream:
                deadline = time.monotonic() + timeout
                for slot in self.out_slots:
                    slot.deadline = deadline
            self.sending = False
            self.out = None
            self.out_slots = []
            self.send_deadline = None
        elif self.send_deadline is None and timeout is not None:
            self.send_deadline = time.monotonic() + timeout

    def _send_stream(self, sock: _socket.socket) -> bool | None:
        """Send what the socket takes of the batch's bytes: True when all of them are out,
        False when the socket is full, None when the send failed."""
        out = self.out
        assert out is not None
        pos = self.out_pos
        while pos < len(out):
            try:
                pos += sock.send(out[pos:])
            except BlockingIOError:
                break
            except OSError as exc:
                self.out_pos = pos
                self._send_failed(exc)
                return None
        self.out_pos = pos
        return pos == len(out)

    def _send_datagrams(self, sock: _socket.socket) -> bool | None:
        """Send what the socket takes of the batch's datagrams (each gets its reply
        deadline): True when all of them are out, False when the socket is full, None when
        the send failed."""
        batch = self.out_slots
        i = self.out_pos
        timeout = self.read_timeout
        due = None if timeout is None else time.monotonic() + timeout
        while i < len(batch):
            slot = batch[i]
            try:
                sock.send(slot.packet)
            except BlockingIOError:
                break
            except OSError as exc:
                self.out_pos = i
                self._send_failed(exc)
                return None
            slot.deadline = due
            i += 1
        self.out_pos = i
        return i == len(batch)

    def _start_batch(self) -> bool:
        """Take the next requests to send (connecting if need be); False if none can go."""
        if self.draining:
            return False
        slots = self.slots
        # requests that failed to encode are not sent
        while self.next_send < len(slots) and slots[self.next_send].result is not None:
            self.next_send += 1
        limit = self._limit()
        busy = len(self.inflight)
        if self.next_send == len(slots) or (busy and busy > limit // 2):
            # refill by halves: a few big sends rather than one per reply received
            return False
        room = limit - busy
        link = self.link
        self.fresh = False
        sock = link.sock
        if sock is None:
            try:
                sock = link.open()
            except TransportError as exc:
                # like a one-at-a-time call: this request fails, the next one tries again
                slots[self.next_send].result = exc
                self.next_send += 1
                return False
            self.fresh = True
        sock.settimeout(0.0)
        if not self.stream and sock is not self.sized:
            self._fit_window(sock)
            room = min(room, self._limit() - busy)
            if room <= 0:  # busy > 0: wait for replies
                return False
        batch: list[_Slot] = []
        packets: list[bytes] = []
        inflight = self.inflight
        sent = self.conn.sent
        size = 0
        i = self.next_send
        stop = min(len(slots), i + room)
        while i < stop:
            slot = slots[i]
            if slot.result is None:
                packet = slot.packet
                if size > _BATCH_BYTES - len(packet) and batch:
                    break
                slot.start = size
                size += len(packet)
                batch.append(slot)
                packets.append(packet)
                inflight[slot.cookie] = slot
                sent(slot.cookie)
            else:
                stop = min(len(slots), stop + 1)  # not sent: does not count
            i += 1
        self.next_send = i
        self.out_slots = batch
        self.out_pos = 0
        self.sending = True
        if self.stream:
            self.out = memoryview(packets[0] if len(packets) == 1 else b"".join(packets))
        return True

    def _unsend(self, slots: list[_Slot]) -> None:
        """Slots of the batch being sent of which no byte left: back to "not sent"."""
        if not slots:
            return
        forget = self.conn.forget
        for slot in slots:
            self.inflight.pop(slot.cookie, None)
            forget(slot.cookie)
        self.next_send = self.slots.index(slots[0], self.head)

    def _end_batch(self, *, fail_current: bool) -> _Slot | None:
        """Stop sending the current batch: its untouched requests go back to "not sent"; the
        one being sent stays in flight (or, ``fail_current``, is returned even if untouched,
        so that the caller fails it: progress is guaranteed)."""
        batch = self.out_slots
        pos = self.out_pos
        self.sending = False
        self.out = None
        self.out_slots = []
        self.send_deadline = None
        if self.stream:
            k = 0  # the first slot not completely sent
            while k < len(batch) and batch[k].start + len(batch[k].packet) <= pos:
                k += 1
        else:
            k = pos  # the datagram being sent (the ones before it are out)
        if k == len(batch):
            return None
        current = batch[k]
        touched = self.stream and current.start < pos
        self._unsend(batch[k + 1 :] if touched or fail_current else batch[k:])
        return current if touched or fail_current else None

    def _send_failed(self, exc: OSError) -> None:
        err = transport_error(SEND, self.address, exc, self.read_timeout)
        batch = self.out_slots
        if self.stream and self.out_pos == 0 and len(self.inflight) == len(batch):
            # nothing of this batch left and nothing else is in flight: no request of ours
            # can have reached the server
            if exc.errno in _RETRY_SEND and not self.fresh:
                # the server closed a connection we had used before: reconnect, send again
                self._end_batch(fail_current=False)
                self.link.close()
                return
            current = self._end_batch(fail_current=True)
            assert current is not None
            self._broken(err, close=True)  # current is the only request in flight
            return
        if not self.stream and exc.errno == errno.EMSGSIZE:
            # one datagram too big for the socket: it fails alone, the next ones can go
            current = batch[self.out_pos]
            self.inflight.pop(current.cookie, None)
            self.conn.forget(current.cookie)
            current.result = err
            self.out_slots = batch = batch[self.out_pos + 1 :]
            self.out_pos = 0
            if not batch:
                self._end_batch(fail_current=False)
            return
        if self.stream:
            self._fail_half_sent(exc)
        else:
            self._end_batch(fail_current=True)
        if self.stream and exc.errno in _RETRY_SEND:
            # requests of ours may have been read: collect the replies written before the
            # close; the rest fail with what the read reports (EOF, reset)
            self.draining = True
        else:
            self._broken(err, close=True)

    def _fail_half_sent(self, exc: OSError) -> None:
        """The stream failed while a request was half sent: that request failed to be sent
        (``SendError``, as ``Client`` raises it; half a request is never executed), whatever
        the read reports to the others. The untouched rest of the batch goes later."""
        current = self._end_batch(fail_current=False)
        if current is not None:
            self.inflight.pop(current.cookie, None)
            self.conn.abandon(current.cookie)
            current.result = transport_error(SEND, self.address, exc, self.read_timeout)

    # -- receiving -------------------------------------------------------------------------
    def _wait(self) -> None:
        """Wait until the socket is readable (then read once) or writable while a batch is
        half sent, or until the oldest request's deadline (then fail what timed out)."""
        sock = self.link.sock
        assert sock is not None
        mask = _POLLIN | _POLLOUT if self.sending else _POLLIN
        poller = self.poller
        if poller is None or self.polled is not sock:
            poller = self.poller = select.poll()
            poller.register(sock, mask)
            self.polled = sock
            self.poll_mask = mask
        elif mask != self.poll_mask:
            poller.modify(sock, mask)
            self.poll_mask = mask
        if self.on_wait is not None:
            self.on_wait()
        deadline = self._deadline()
        if deadline is None:
            events = poller.poll()
        else:
            remaining = deadline - time.monotonic()
            events = poller.poll(max(0, int(remaining * 1000 + 0.999))) if remaining > 0 else []
        if not events:
            if deadline is not None and time.monotonic() >= deadline:
                self._timed_out()
            return
        if events[0][1] & ~_POLLOUT:  # readable, or an error/hang-up the read will report
            self._read()

    def _deadline(self) -> float | None:
        if self.read_timeout is None:
            return None
        deadline = self.send_deadline if self.sending else None
        for slot in self.inflight.values():
            if slot.deadline is not None and (deadline is None or slot.deadline < deadline):
                deadline = slot.deadline
            break
        return deadline

    def _timed_out(self) -> None:
        now = time.monotonic()
        if self.sending and self.send_deadline is not None and self.send_deadline <= now:
            # the server has not read for that long: give up the connection
            self._end_batch(fail_current=True)
            err = timeout_error("sending to", self.address, self.read_timeout)
            self._broken(err, close=True)
            return
        err = timeout_error("waiting for the reply from", self.address, self.read_timeout)
        if self.stream:
            self._broken(err, close=True)  # the stream's position is unknown now
            return
        conn = self.conn
        for cookie, slot in list(self.inflight.items()):
            if slot.deadline is None or slot.deadline > now:
                break
            del self.inflight[cookie]
            conn.abandon(cookie)
            slot.result = err
        conn.discard_buffered()  # a reply half received is lost with its request

    def _read(self) -> None:
        sock = self.link.sock
        assert sock is not None
        conn = self.conn
        error: BinrpcError | None = None
        cause: OSError | None = None
        try:
            if self.stream:
                buf = conn.buffer()
                n = sock.recv_into(buf)
                del buf  # see ClientConnection.buffer
                if n == 0:
                    error = closed_error(self.address, conn.buffered)
                    cause = BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
                else:
                    conn.advance(n)
            else:
                dgram = self.link.dgram
                for _ in range(self.window * 4):
                    n = sock.recv_into(dgram)
                    conn.receive_data(memoryview(dgram)[:n])
        except BlockingIOError:
            pass
        except OSError as exc:
            error = transport_error(RECEIVE, self.address, exc, self.read_timeout)
            cause = exc
        inflight = self.inflight
        largest = self.largest
        for reply in conn.replies():
            slot = inflight.pop(reply.cookie, None)
            if slot is None:  # pragma: no cover - the connection's in-flight set is ours
                continue
            slot.result = reply
            size = len(reply.body) + 10 + _REPLY_OVERHEAD
            largest = max(largest, size)
        self.largest = largest
        if conn.error is not None:
            self._broken(conn.error, close=True)
            return
        if error is not None:
            if self.sending and self.stream and cause is not None:
                self._fail_half_sent(cause)
            self._broken(error, close=self.stream)

    def _broken(self, exc: BinrpcError, *, close: bool) -> None:
        """The connection failed: every request in flight gets its error
        (:meth:`ClientConnection.fail`); ``close`` it (else, a datagram socket: drop what is
        half received)."""
        if self.sending:
            # a read failed while a batch is half sent: its untouched part goes later
            self._end_batch(fail_current=False)
        inflight = self.inflight
        for cookie, err in self.conn.fail(exc):
            slot = inflight.pop(cookie, None)
            if slot is not None:
                slot.result = err
        inflight.clear()
        self.draining = False
        if close:
            self.link.close()
        else:
            self.conn.discard_buffered()
