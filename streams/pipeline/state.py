"""The exactly-once protocol every partition state follows, written once.

Three states implement it: the window state of a source partition
(``window_state.PartitionState``), the customer state and the merge state of a
re-keyed partition (``customer_state``, ``merge_state``). Each is fed batches of
``Message``s in offset order and answers with the changelog records that hold the
batch (``Applied``), its meta record last:

- a message below ``meta.through`` is already in the persisted state and is skipped
  (``unpersisted``); every other one is counted and its rejections parked;
- every state record carries its own ``through`` (the offset after the last message
  it holds), so a replay skips a message for the records that hold it only;
- the meta record, written last, moves ``through`` to the end of the batch (``seal``):
  once it is persisted, the whole batch is; and a record whose ``through`` lies past the
  last meta record's belongs to a batch that never committed, which a restore leaves out
  (``settled``).

``restore`` rebuilds a state from its changelog records (oldest first), ``tombstones``
deletes them all (a reset), and ``snapshot`` gives the scrape an immutable copy.

    >>> from streams.pipeline.records import Message
    >>> class Counter(ExactlyOnce):
    ...     def __init__(self):
    ...         self.meta, self._prefix = Meta(), b"demo|0|"
    >>> state, parked = Counter(), []
    >>> [m.offset for m in state.unpersisted([Message(0, [], []), Message(1, [], [])], parked)]
    [0, 1]
    >>> records = []; state.seal(records, 2); records
    [(b'demo|0|m|0', b'[2,null,0,0,0,{},2,{},{},null,null,null,null,0]')]
    >>> [m.offset for m in state.unpersisted([Message(1, [], []), Message(2, [], [])], parked)]
    [2]
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

from streams.pipeline.records import Applied, Message, Meta, Parked


class PartitionStateProtocol(Protocol):
    """What the batch plan and the engines need of a partition state."""

    family: str
    partition: int
    meta: Meta

    def apply(self, messages: Iterable[Message]) -> Applied: ...

    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int: ...

    def tombstones(self) -> list[tuple[bytes, None]]: ...

    def snapshot(self, previous: Any = None) -> Any: ...


class ExactlyOnce:
    """The skeleton the partition states share: their changelog keys, the skip below
    ``meta.through`` with the message counters, and the meta record last."""

    meta: Meta
    _prefix: bytes  # b"<stage>|<partition>|": every changelog key of this state starts with it
    # Record kinds ``settled`` never leaves out: kinds with no ``through`` of their own, or
    # whose ``through`` may run ahead of the meta record's by design.
    unbounded_kinds: frozenset[bytes] = frozenset()

    def key(self, kind: bytes, ident: int | str) -> bytes:
        """The changelog key of one of this state's records."""
        return self._prefix + kind + b"|" + str(ident).encode()

    def unpersisted(self, messages: Iterable[Message], parked: list[Parked]) -> Iterator[Message]:
        """The messages not yet in the persisted state, in offset order; each is counted and
        its rejections parked (and counted by reason) as it is handed out."""
        meta = self.meta
        for message in messages:
            offset = message.offset
            if offset < meta.through:
                continue  # fully persisted before: a replay after a crash or rebalance
            meta.messages += 1
            for rejection in message.rejections:
                meta.rejected[rejection.reason] = meta.rejected.get(rejection.reason, 0) + 1
                parked.append(Parked(offset, rejection.reason, rejection.detail, rejection.index, rejection.raw))
            yield message

    def settled(self, records: Iterable[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
        """This state's records of ``records`` that a restore may apply, in order.

        A record whose ``through`` lies past the last meta record's comes from a batch that
        never committed: Kafka's read_committed reads never show one, but a broker that shows
        aborted transactions' records (Tansu), or the read_uncommitted fallback of recovery,
        does. Applied, it would claim events that the records written since, by a replay that
        did not see it and ended sooner, do not hold, and the replay would skip them there. So
        it is left out, and the version of its key before it stands. Tombstones pass, and so
        do the kinds in ``unbounded_kinds``."""
        prefix, size = self._prefix, len(self._prefix)
        mine = [(key, value) for key, value in records if key.startswith(prefix)]
        meta_key = self.key(b"m", 0)
        limit = self.meta.through  # incremental: a kept state's position when no meta follows
        for key, value in mine:
            if key == meta_key:
                limit = 0 if value is None else _through(value)
        return [(key, value) for key, value in mine
                if value is None or key[size:size + 1] in self.unbounded_kinds or _through(value) <= limit]

    def seal(self, records: list[tuple[bytes, bytes | None]], end: int) -> None:
        """Close a batch that ends before offset ``end``: the meta record, last."""
        self.meta.through = end
        records.append((self.key(b"m", 0), self.meta.to_json()))


def _through(value: bytes) -> int:
    """The ``through`` of a state record: the first element of its JSON array."""
    return int(value[1:value.index(b",")])
