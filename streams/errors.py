"""The exception tree and the rejection reasons, at the boundaries of the flow.

    CxpulseError                 anything cxpulse raises on purpose
    ├── ConfigError              a setting is wrong: fails start-up, names the setting
    ├── InvalidEvent             the producer library refuses an event (carries a Reason)
    ├── ProducerError            the producer library cannot reach Kafka in time
    │   └── DeliveryError        sent events were not delivered (raised by flush)
    └── StateRecoveryError       the state changelog could not be read back

Bad events inside a worker are not exceptions: the decoder returns them as
``Rejection`` values with one of the ``Reason`` codes below; they are parked in
the dead-letter topic and counted by reason.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

Reason = Literal[
    "oversized",        # message larger than max_message_bytes
    "not_utf8",         # bytes are not valid UTF-8
    "not_json",         # not parseable JSON (NaN and Infinity included; orjson reads huge ints as floats)
    "not_object",       # an event that is not a JSON object (or a batch that is not an array of them)
    "empty_batch",      # a JSON array with no events
    "too_many_events",  # a batch over max_batch_events
    "missing_field",    # a required field is absent
    "wrong_type",       # a field has the wrong JSON type
    "bad_value",        # a string field breaks its pattern (id, label, currency)
    "unknown_type",     # `type` is not an event type of the contract
    "unsupported_version",  # schema_version is not one this worker reads
    "wrong_topic",      # the event's family does not belong on this topic
    "out_of_range",     # a number outside its range (scores, amounts)
    "bad_timestamp",    # occurred_at is not RFC 3339 with an offset
    "future_timestamp", # occurred_at too far ahead of the worker's clock
    "wrong_partition",  # an event of a batch whose key maps to another partition than the message's
    "late",             # older than its window's grace period (counted, parked)
    "malformed_json",   # a message on one of cxpulse's own re-keyed topics that cxpulse did not write
]
REASONS: tuple[str, ...] = get_args(Reason)

# Refusals only the producer library makes: a worker ignores properties the contract
# does not name, so these never reach the dead-letter topic.
ProducerReason = Literal[
    "unknown_field",    # a top-level name the event type does not have (a typo, or an extra not passed as extra=)
    "field_in_extra",   # extra= names a field of the contract: pass it as that field
]


class CxpulseError(Exception):
    """Base of everything cxpulse raises on purpose."""


class ConfigError(CxpulseError):
    """A setting is wrong. The message names the setting and what it accepts."""


class InvalidEvent(CxpulseError, ValueError):
    """An event breaks the contract (raised by the producer library)."""

    def __init__(self, reason: Reason | ProducerReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ProducerError(CxpulseError):
    """The producer library could not reach Kafka, or hand it an event, in the time its
    settings allow. The message names the address and the setting that bounds the wait."""


class DeliveryError(ProducerError):
    """Events that ``send`` accepted were not delivered. Raised by ``Producer.flush``.

    ``reports``: the failed events' delivery reports (the first 100 of them);
    ``failed``: how many failed in all since the previous flush.
    """

    def __init__(self, message: str, reports: list[Any], failed: int) -> None:
        super().__init__(message)
        self.reports = reports
        self.failed = failed


class StateRecoveryError(CxpulseError):
    """The state changelog could not be read back to its high-water mark."""


class ReportError(CxpulseError):
    """The report cannot be made: Prometheus unreachable, no data, a bad week. The message says what to do."""
