"""The exception tree and the rejection reasons, at the boundaries of the flow.

    CxpulseError                 anything cxpulse raises on purpose
    ├── ConfigError              a setting is wrong: fails start-up, names the setting
    ├── InvalidEvent             the producer library refuses an event (carries a Reason)
    └── StateRecoveryError       the state changelog could not be read back

Bad events inside a worker are not exceptions: the decoder returns them as
``Rejection`` values with one of the ``Reason`` codes below; they are parked in
the dead-letter topic and counted by reason.
"""

from __future__ import annotations

from typing import Literal, get_args

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
]
REASONS: tuple[str, ...] = get_args(Reason)


class CxpulseError(Exception):
    """Base of everything cxpulse raises on purpose."""


class ConfigError(CxpulseError):
    """A setting is wrong. The message names the setting and what it accepts."""


class InvalidEvent(CxpulseError, ValueError):
    """An event breaks the contract (raised by the producer library)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StateRecoveryError(CxpulseError):
    """The state changelog could not be read back to its high-water mark."""
