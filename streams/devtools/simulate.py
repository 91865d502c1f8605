"""Simulated storefront traffic: contract-valid events, seeded, in send order.

A source for the flow's first stop (Kafka bytes), used by the local demo, the
end-to-end tests and load runs. ``generate`` is pure: one ``random.Random``
seeded from the config, no wall clock, so one seed and one config give the same
events byte for byte. Its event clock starts at ``SimConfig.start_ms`` and moves
``1000 / rate_per_s`` ms per event sent; pacing against the wall clock, the
file and Kafka sinks live in ``run`` at the edge.

The model: visitors start sessions (more at evening peak, fewer at night) and
walk a funnel whose drop-off depends on channel and device; some check out
and order (lognormal totals, one currency per store, repeat customers), some
orders are refunded or returned later; customers open support tickets (bots
answer, agents write internal notes and a first public reply after a delay
that depends on the support channel, tickets get resolved, a few reopen);
customers answer NPS, CSAT and CES surveys. Then the delivery gets messy on
purpose: some events are sent a few seconds late (out of order within grace),
some beyond ``late_delay_ms`` (late), some twice with the same ``event_id``.

    >>> cfg = SimConfig(seed=7, start_ms=1_715_688_000_000)
    >>> next(generate(cfg))["type"]
    'session.started'
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import heapq
import itertools
import math
import random
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Literal

from streams.contract import EVENT_TYPES, SCHEMA_VERSION
from streams.errors import ConfigError

Scenario = Literal["none", "checkout-broken", "support-understaffed"]
SCENARIOS: tuple[Scenario, ...] = ("none", "checkout-broken", "support-understaffed")
Channel = Literal["web", "app", "social", "marketplace"]
Device = Literal["desktop", "mobile", "tablet"]
SupportChannel = Literal["email", "chat", "sms", "phone", "social"]

_MIN = 60_000


@dataclass(frozen=True)
class Storefront:
    """One simulated store: a label-safe name, its currency, its AOV, its traffic share."""

    name: str
    currency: str
    aov_minor: int  # mean order total in minor units (cents / pence)
    weight: float  # relative share of sessions


@dataclass(frozen=True)
class ChannelProfile:
    """Funnel of one sales channel. ``cvr`` is the target orders / sessions.

    The top stages are given; checkout -> order is derived so that the expected
    conversion equals ``cvr`` (``order_given_checkout``).
    """

    weight: float  # share of sessions
    cvr: float
    view: float  # P(at least one product view | session)
    cart: float  # P(cart add | viewed), before the device factor
    checkout: float  # P(checkout | cart)
    devices: tuple[tuple[Device, float], ...]

    def order_given_checkout(self) -> float:
        return self.cvr / (self.view * self.cart * self.checkout)


STOREFRONTS: tuple[Storefront, ...] = (
    Storefront("north-outfitters", "EUR", 8_900, 0.28),
    Storefront("harbor-tea", "GBP", 3_400, 0.20),
    Storefront("pixel-peak", "USD", 12_900, 0.18),
    Storefront("fern-and-field", "EUR", 5_600, 0.14),
    Storefront("copper-kettle", "USD", 4_700, 0.12),
    Storefront("summit-cycles", "EUR", 21_000, 0.08),
)

CHANNELS: dict[Channel, ChannelProfile] = {
    "web": ChannelProfile(0.45, 0.028, 0.72, 0.12, 0.50,
                          (("desktop", 0.50), ("mobile", 0.42), ("tablet", 0.08))),
    "app": ChannelProfile(0.25, 0.042, 0.80, 0.16, 0.55, (("mobile", 0.85), ("tablet", 0.15))),
    "social": ChannelProfile(0.18, 0.011, 0.55, 0.07, 0.40,
                             (("desktop", 0.10), ("mobile", 0.85), ("tablet", 0.05))),
    "marketplace": ChannelProfile(0.12, 0.035, 0.85, 0.14, 0.50,
                                  (("desktop", 0.45), ("mobile", 0.47), ("tablet", 0.08))),
}

# Relative add-to-cart propensity; normalised per channel so each channel still
# converts at its target rate (mobile visitors browse more and buy less).
DEVICE_FACTOR: dict[Device, float] = {"desktop": 1.3, "mobile": 0.8, "tablet": 1.0}

# Session starts by UTC hour, peak = 1.0 at 20:00: evening shopping, quiet nights.
DIURNAL: tuple[float, ...] = (
    0.45, 0.35, 0.28, 0.25, 0.25, 0.28, 0.35, 0.45, 0.55, 0.62, 0.68, 0.72,
    0.78, 0.76, 0.72, 0.70, 0.72, 0.78, 0.86, 0.94, 1.00, 0.96, 0.80, 0.60,
)

SUPPORT_MIX: tuple[tuple[SupportChannel, float], ...] = (
    ("email", 0.35), ("chat", 0.30), ("phone", 0.15), ("social", 0.12), ("sms", 0.08),
)
# Median first public agent reply, minutes (lognormal around it).
FRT_MEDIAN_MIN: dict[SupportChannel, float] = {
    "email": 35.0, "chat": 2.0, "phone": 1.0, "social": 20.0, "sms": 12.0,
}
SOURCES: tuple[tuple[str, float], ...] = (
    ("organic", 0.35), ("paid", 0.25), ("direct", 0.2), ("email", 0.1), ("referral", 0.1),
)


@dataclass(frozen=True)
class SimConfig:
    """Every knob of the simulation, with its default. Times are ms of event time."""

    seed: int = 1
    start_ms: int = 1_715_688_000_000  # 2024-05-14T12:00:00Z; the CLI uses now
    rate_per_s: float = 200.0  # events sent per second of event time
    storefronts: tuple[Storefront, ...] = STOREFRONTS[:4]
    channels: dict[str, ChannelProfile] = field(default_factory=lambda: dict(CHANNELS))
    device_factor: dict[str, float] = field(default_factory=lambda: dict(DEVICE_FACTOR))
    diurnal: tuple[float, ...] = DIURNAL
    # What starts new activity when nothing scheduled is due (relative weights):
    session_weight: float = 1.0  # times DIURNAL[hour]
    standalone_ticket_weight: float = 0.01  # pre-sales and account questions
    standalone_survey_weight: float = 0.02  # relationship NPS, not tied to anything
    # Orders
    order_total_sigma: float = 0.55  # lognormal sigma of totals; mean is the store's AOV
    repeat_customer_share: float = 0.30  # orders placed by a returning customer
    customer_pool_size: int = 5_000  # returning customers remembered per store
    refund_share: float = 0.04
    return_share: float = 0.08
    refund_delay_median_ms: int = 10 * _MIN  # compressed: days in real life
    return_delay_median_ms: int = 15 * _MIN
    # Support
    support_mix: tuple[tuple[str, float], ...] = SUPPORT_MIX
    frt_median_min: dict[str, float] = field(default_factory=lambda: dict(FRT_MEDIAN_MIN))
    frt_sigma: float = 0.8
    support_time_scale: float = 1.0  # multiplies every support delay (0.1 for a quick demo)
    ticket_after_order_share: float = 0.06  # "where is my order?"
    ticket_delay_median_ms: int = 20 * _MIN
    bot_reply_share: float = 0.6  # on email, chat and social
    internal_note_share: float = 0.25
    customer_chase_share: float = 0.15  # customer writes again before the first agent reply
    extra_round_share: float = 0.45  # P(another customer/agent exchange), repeated
    resolve_share: float = 0.95
    reopen_share: float = 0.08
    # Surveys
    nps_mix: tuple[float, float, float] = (0.50, 0.30, 0.20)  # promoter, passive, detractor
    csat_weights: tuple[float, ...] = (0.05, 0.05, 0.10, 0.30, 0.50)  # scores 1..5
    ces_weights: tuple[float, ...] = (0.04, 0.05, 0.08, 0.13, 0.20, 0.25, 0.25)  # scores 1..7
    nps_after_order_share: float = 0.12
    csat_after_ticket_share: float = 0.35
    ces_after_ticket_share: float = 0.15
    # Messy delivery
    ooo_share: float = 0.0  # sent 1-8 s late: out of order, within grace
    late_share: float = 0.0  # sent late_delay_ms (+0-60 s) late: beyond grace
    late_delay_ms: int = 10 * _MIN
    dup_share: float = 0.0  # sent a second time, same event_id, 0.1-3 s later
    # Warm start: the simulation begins this long before start_ms and sends nothing
    # until then, so the first events sent already show steady-state funnels (a cold
    # start converts almost nothing for minutes: orders come minutes after sessions).
    warmup_ms: int = 0
    # A CX initiative's effect, for the treated arm of a declared initiative (``cxpulse up``
    # declares one): sessions whose storefront, channel and device match ``treated`` turn a
    # checkout into an order ``1 + conversion_uplift`` times as often, so their conversion rises
    # by that share; every other session is untouched, so a control segment shows the baseline.
    # It holds for the whole run (warm-up included): the initiative is already running.
    treated: dict[str, str] = field(default_factory=dict)  # e.g. {"storefront": "north-outfitters"}
    conversion_uplift: float = 0.0  # relative: 0.3 = conversion x1.3 in the treated segment
    # Incidents
    scenario: Scenario = "none"
    incident_after_ms: int = 3 * _MIN  # from start_ms: shows within minutes of a demo
    checkout_broken_drop: float = 0.8  # share of checkouts that fail to become orders
    understaffed_factor: float = 5.0  # agent reply delays multiply by this

    @property
    def incident_at_ms(self) -> int:
        return self.start_ms + self.incident_after_ms

    def validate(self) -> None:
        """Fail naming the knob and what it accepts."""
        def fail(name: str, accepts: str) -> None:
            raise ConfigError(f"simulate {name}={getattr(self, name)!r} is not valid: it accepts {accepts}")

        if not self.rate_per_s > 0:
            fail("rate_per_s", "a rate above 0 events/s")
        if not self.storefronts:
            fail("storefronts", f"1 to {len(STOREFRONTS)} storefronts")
        for name in ("ooo_share", "late_share", "dup_share", "repeat_customer_share", "refund_share",
                     "return_share", "ticket_after_order_share", "reopen_share", "resolve_share",
                     "checkout_broken_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "a share between 0 and 1")
        if self.ooo_share + self.late_share > 1.0:
            fail("late_share", "a share with ooo_share + late_share <= 1")
        if self.scenario not in SCENARIOS:
            fail("scenario", " | ".join(SCENARIOS))
        if abs(sum(self.nps_mix) - 1.0) > 1e-9:
            fail("nps_mix", "three shares (promoter, passive, detractor) summing to 1")
        for name, profile in self.channels.items():
            top = max(self.device_factor[d] for d, w in profile.devices if w > 0)
            mean = sum(self.device_factor[d] * w for d, w in profile.devices)
            if profile.cart * top / mean > 1 or not 0 < profile.order_given_checkout() <= 1:
                fail("channels", f"funnels whose derived stage probabilities stay <= 1 (channel {name})")
        self._validate_treated(fail)

    def _validate_treated(self, fail: Callable[[str, str], None]) -> None:
        # The segment labels are those a declared initiative can name (streams.initiatives.model);
        # an unknown value would match nothing, and the demo would silently show no uplift.
        known = {"storefront": {s.name for s in self.storefronts}, "channel": set(self.channels),
                 "device": set(self.device_factor)}
        for label, value in self.treated.items():
            if value not in known.get(label, ()):
                fail("treated", "storefront=, channel= or device= with a simulated value: "
                     + "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in known.items()))
        if not self.conversion_uplift > -1.0:
            fail("conversion_uplift", "a relative change above -1 (0.3 = conversion x1.3)")
        if self.conversion_uplift and not self.treated:
            fail("conversion_uplift", "0 unless a treated segment is given")
        # The largest uplift that keeps P(order | checkout) <= 1 on every channel the segment reaches.
        limit, tightest = min((1 / profile.order_given_checkout() - 1, name) for name, profile in self.channels.items()
                              if self.treated.get("channel", name) == name)
        if self.conversion_uplift > limit:
            fail("conversion_uplift", f"an uplift that keeps P(order | checkout) <= 1: at most {limit:.2f} for this "
                 f"segment (channel {tightest})")

    def in_treated(self, storefront: str, channel: str, device: str) -> bool:
        """Does a session of this storefront, channel and device get the initiative's uplift?"""
        if not self.treated:
            return False
        values = {"storefront": storefront, "channel": channel, "device": device}
        return all(values[label] == value for label, value in self.treated.items())


# -- the generator -----------------------------------------------------------------

def generate(cfg: SimConfig) -> Iterator[dict[str, Any]]:
    """Endless contract-valid events in send order; seeded, no wall clock.

    Event time moves 1000 / rate_per_s ms per event sent.

        >>> [e["type"] for e in itertools.islice(generate(SimConfig(seed=3)), 2)]
        ['session.started', 'session.started']
    """
    cfg.validate()
    return _Simulation(cfg).events()


class _Simulation:
    """The state of one run: scheduled events, held (messy) events, customer pools."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        tag = hashlib.blake2b(f"{cfg.seed}:{cfg.start_ms}".encode(), digest_size=3).hexdigest()
        self.tag = tag  # ids differ between runs, so a rerun is not deduplicated away
        self.counter = itertools.count(1)
        self.seq = itertools.count()  # heap tie-breaker: keeps insertion order
        # (due_ms, seq, storefront index, make) -> make(now_ms) builds the event
        self.scheduled: list[tuple[int, int, int, Callable[[int], dict[str, Any]]]] = []
        self.held: list[tuple[int, int, dict[str, Any]]] = []  # (release_ms, seq, event)
        self.customers: list[list[str]] = [[] for _ in cfg.storefronts]
        self.clock_ms = cfg.start_ms
        self._ts_second = -1
        self._ts_prefix = ""
        self._store_weights = list(itertools.accumulate(s.weight for s in cfg.storefronts))
        names = list(cfg.channels)
        self._channel_names = names
        self._channel_weights = list(itertools.accumulate(cfg.channels[c].weight for c in names))
        self._support_names = [c for c, _ in cfg.support_mix]
        self._support_weights = list(itertools.accumulate(w for _, w in cfg.support_mix))
        self._devices = {c: ([d for d, _ in p.devices], list(itertools.accumulate(w for _, w in p.devices)))
                         for c, p in cfg.channels.items()}
        self._sources = ([name for name, _ in SOURCES], list(itertools.accumulate(w for _, w in SOURCES)))
        self._device_norm = {
            c: sum(cfg.device_factor[d] * w for d, w in p.devices) for c, p in cfg.channels.items()
        }
        self._aov_mu = [math.log(s.aov_minor) - cfg.order_total_sigma ** 2 / 2 for s in cfg.storefronts]

    # -- sending: the event clock and the messy delivery --------------------------

    def events(self) -> Iterator[dict[str, Any]]:
        cfg, rng = self.cfg, self.rng
        step_ms = 1000.0 / cfg.rate_per_s
        ooo, late = cfg.ooo_share, cfg.ooo_share + cfg.late_share
        first_tick = -int(cfg.warmup_ms / step_ms)
        for tick in itertools.count(first_tick):
            self.clock_ms = now = cfg.start_ms + int(tick * step_ms)
            warming = now < cfg.start_ms  # simulated, not sent
            if self.held and self.held[0][0] <= now:
                event = heapq.heappop(self.held)[2]
                if not warming:
                    yield event
                continue
            while True:
                event = self._next_new(now)
                u = rng.random()
                if u < ooo:
                    self._hold(event, now + rng.randint(1_000, 8_000))
                elif u < late:
                    self._hold(event, now + cfg.late_delay_ms + rng.randint(0, 60_000))
                else:
                    break
            if rng.random() < cfg.dup_share:
                self._hold(event, now + rng.randint(100, 3_000))
            if not warming:
                yield event

    def _hold(self, event: dict[str, Any], release_ms: int) -> None:
        heapq.heappush(self.held, (release_ms, next(self.seq), event))

    def _next_new(self, now: int) -> dict[str, Any]:
        if self.scheduled and self.scheduled[0][0] <= now:
            _, _, _, make = heapq.heappop(self.scheduled)
            return make(now)
        return self._start_something(now)

    def _start_something(self, now: int) -> dict[str, Any]:
        cfg, rng = self.cfg, self.rng
        hour = (now // 3_600_000) % 24
        w_session = cfg.session_weight * cfg.diurnal[hour]
        total = w_session + cfg.standalone_ticket_weight + cfg.standalone_survey_weight
        u = rng.random() * total
        store = self._pick_store()
        if u < w_session:
            return self._session_started(now, store)
        if u < w_session + cfg.standalone_ticket_weight:
            customer = self._returning_customer(store) if rng.random() < 0.7 else None
            return self._ticket_created(now, store, customer, None)
        return self._survey(now, store, "nps", customer_id=self._returning_customer(store))

    def _at(self, due_ms: int, store: int, make: Callable[[int], dict[str, Any]]) -> None:
        heapq.heappush(self.scheduled, (due_ms, next(self.seq), store, make))

    # -- helpers ------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{self.tag}-{next(self.counter)}"

    def _timestamp(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        if second != self._ts_second:
            self._ts_second = second
            moment = datetime.fromtimestamp(second, tz=timezone.utc)
            self._ts_prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._ts_prefix}.{milli:03d}Z"

    def _envelope(self, type_name: str, now: int, store: int, **body: Any) -> dict[str, Any]:
        event = {
            "event_id": self._id("e"),
            "type": type_name,
            "schema_version": SCHEMA_VERSION,
            "occurred_at": self._timestamp(now),
            "storefront": self.cfg.storefronts[store].name,
        }
        event.update(body)
        return event

    def _pick_store(self) -> int:
        return _pick_index(self.rng, self._store_weights)

    def _lognormal_ms(self, median_ms: float, sigma: float) -> int:
        return max(1_000, int(median_ms * math.exp(self.rng.gauss(0.0, sigma))))

    def _returning_customer(self, store: int) -> str | None:
        pool = self.customers[store]
        return pool[int(self.rng.random() * len(pool))] if pool else None

    # -- sessions and the funnel -------------------------------------------------------

    def _session_started(self, now: int, store: int) -> dict[str, Any]:
        cfg, rng = self.cfg, self.rng
        channel = self._channel_names[_pick_index(rng, self._channel_weights)]
        profile = cfg.channels[channel]
        names, cumulative = self._devices[channel]
        device = names[_pick_index(rng, cumulative)]
        session_id = self._id("s")
        common = {"session_id": session_id, "channel": channel, "device": device}
        t = now
        if rng.random() < profile.view:
            for _ in range(1 + min(4, int(rng.expovariate(0.7)))):
                t += rng.randint(5_000, 60_000)
                self._funnel_step(t, store, "session.product_viewed", common, product=True)
            cart = profile.cart * cfg.device_factor[device] / self._device_norm[channel]
            if rng.random() < cart:
                for _ in range(1 if rng.random() < 0.7 else 2):
                    t += rng.randint(10_000, 90_000)
                    self._funnel_step(t, store, "session.cart_added", common, product=True)
                if rng.random() < profile.checkout:
                    t += rng.randint(20_000, 120_000)
                    self._funnel_step(t, store, "session.checkout_started", common, product=False)
                    p_order = profile.order_given_checkout()
                    # No extra random draw: with no uplift a run is byte for byte what it was
                    # before this knob existed, and a control session never sees it.
                    if cfg.conversion_uplift and cfg.in_treated(cfg.storefronts[store].name, channel, device):
                        p_order *= 1.0 + cfg.conversion_uplift
                    if cfg.scenario == "checkout-broken" and t >= cfg.incident_at_ms:
                        p_order *= 1.0 - cfg.checkout_broken_drop
                    if rng.random() < p_order:
                        t += rng.randint(30_000, 240_000)
                        self._at(t, store, lambda at: self._order_placed(at, store, common))
        source = self._sources[0][_pick_index(rng, self._sources[1])] if channel != "social" else "social"
        return self._envelope("session.started", now, store, visitor_id=self._id("v"), source=source, **common)

    def _funnel_step(self, due: int, store: int, type_name: str, common: dict[str, str], product: bool) -> None:
        extra = {"product_id": f"p-{store}-{1 + int(self.rng.random() * 399)}"} if product else {}
        self._at(due, store, lambda at: self._envelope(type_name, at, store, **common, **extra))

    # -- orders ------------------------------------------------------------------------

    def _order_placed(self, now: int, store: int, session: dict[str, str]) -> dict[str, Any]:
        cfg, rng = self.cfg, self.rng
        pool = self.customers[store]
        if pool and rng.random() < cfg.repeat_customer_share:
            customer, first = pool[rng.randrange(len(pool))], False
        else:
            customer, first = self._id("c"), True
            if len(pool) < cfg.customer_pool_size:
                pool.append(customer)
            else:
                pool[rng.randrange(len(pool))] = customer
        total = max(1, round(rng.lognormvariate(self._aov_mu[store], cfg.order_total_sigma)))
        currency = cfg.storefronts[store].currency
        order_id = self._id("o")
        segment = {"channel": session["channel"], "device": session["device"]}
        if rng.random() < cfg.return_share:
            due = now + self._lognormal_ms(cfg.return_delay_median_ms, 0.6)
            amount = total if rng.random() < 0.6 else int(total * rng.uniform(0.2, 0.8))
            money = {"amount_minor": amount, "currency": currency} if rng.random() < 0.7 else {}
            self._at(due, store, lambda at: self._envelope(
                "order.returned", at, store, order_id=order_id, **money, **segment))
        if rng.random() < cfg.refund_share:
            due = now + self._lognormal_ms(cfg.refund_delay_median_ms, 0.6)
            amount = total if rng.random() < 0.6 else int(total * rng.uniform(0.2, 0.8))
            self._at(due, store, lambda at: self._envelope(
                "order.refunded", at, store, order_id=order_id, amount_minor=amount,
                currency=currency, **segment))
        if rng.random() < cfg.ticket_after_order_share:
            due = now + self._lognormal_ms(cfg.ticket_delay_median_ms * cfg.support_time_scale, 0.7)
            self._at(due, store, lambda at: self._ticket_created(at, store, customer, order_id))
        if rng.random() < cfg.nps_after_order_share:
            due = now + self._lognormal_ms(30 * _MIN, 0.6)
            self._at(due, store, lambda at: self._survey(
                at, store, "nps", customer_id=customer, order_id=order_id, channel=session["channel"]))
        return self._envelope(
            "order.placed", now, store, order_id=order_id, customer_id=customer,
            session_id=session["session_id"], total_minor=total, currency=currency,
            first_order=first, **segment)

    # -- support tickets -------------------------------------------------------------

    def _ticket_created(self, now: int, store: int, customer: str | None, order_id: str | None) -> dict[str, Any]:
        cfg, rng = self.cfg, self.rng
        support = self._support_names[_pick_index(rng, self._support_weights)]
        ticket_id = self._id("t")
        scale = cfg.support_time_scale
        if cfg.scenario == "support-understaffed" and now >= cfg.incident_at_ms:
            scale *= cfg.understaffed_factor
        frt_median = cfg.frt_median_min[support] * _MIN * scale

        def reply(t: int, author: str, public: bool = True) -> None:
            self._at(t, store, lambda at: self._envelope(
                "ticket.replied", at, store, ticket_id=ticket_id, author=author, public=public,
                support_channel=support))

        def status(t: int, type_name: str) -> None:
            self._at(t, store, lambda at: self._envelope(
                type_name, at, store, ticket_id=ticket_id, support_channel=support))

        if support in ("email", "chat", "social") and rng.random() < cfg.bot_reply_share:
            reply(now + rng.randint(2_000, 20_000), "bot")
        first = now + self._lognormal_ms(frt_median, cfg.frt_sigma)
        if rng.random() < cfg.internal_note_share:
            reply(now + int((first - now) * rng.uniform(0.2, 0.9)), "agent", public=False)
        if rng.random() < cfg.customer_chase_share:
            reply(now + int((first - now) * rng.uniform(0.3, 0.95)), "customer")
        reply(first, "agent")
        t = first
        while rng.random() < cfg.extra_round_share:
            t += self._lognormal_ms(5 * _MIN * cfg.support_time_scale, 0.8)
            reply(t, "customer")
            t += self._lognormal_ms(frt_median * 0.6, cfg.frt_sigma)
            reply(t, "agent")
        if rng.random() < cfg.resolve_share:
            t += self._lognormal_ms(8 * _MIN * scale, 0.7)
            status(t, "ticket.resolved")
            if rng.random() < cfg.reopen_share:
                t += self._lognormal_ms(30 * _MIN * cfg.support_time_scale, 0.8)
                reply(t, "customer")
                status(t + 1, "ticket.reopened")
                t += self._lognormal_ms(frt_median * 0.6, cfg.frt_sigma)
                reply(t, "agent")
                t += self._lognormal_ms(5 * _MIN * scale, 0.7)
                status(t, "ticket.resolved")
            self._after_resolve(t, store, ticket_id, customer)
        body: dict[str, Any] = {"ticket_id": ticket_id, "support_channel": support}
        if customer:
            body["customer_id"] = customer
        if order_id:
            body["order_id"] = order_id
        return self._envelope("ticket.created", now, store, **body)

    def _after_resolve(self, resolved_ms: int, store: int, ticket_id: str, customer: str | None) -> None:
        cfg, rng = self.cfg, self.rng
        u = rng.random()
        kind = "csat" if u < cfg.csat_after_ticket_share else (
            "ces" if u < cfg.csat_after_ticket_share + cfg.ces_after_ticket_share else None)
        if kind:
            due = resolved_ms + self._lognormal_ms(10 * _MIN * cfg.support_time_scale, 0.7)
            self._at(due, store, lambda at: self._survey(
                at, store, kind, customer_id=customer, ticket_id=ticket_id))

    # -- surveys ------------------------------------------------------------------------

    def _survey(self, now: int, store: int, kind: str, **links: str | None) -> dict[str, Any]:
        cfg, rng = self.cfg, self.rng
        if kind == "nps":
            u = rng.random()
            promoter, passive, _ = cfg.nps_mix
            if u < promoter:
                score = 10 if rng.random() < 0.55 else 9
            elif u < promoter + passive:
                score = rng.choice((7, 8))
            else:
                score = _pick_index(rng, list(itertools.accumulate((1, 1, 1, 2, 3, 5, 6))))
        elif kind == "csat":
            score = 1 + _pick_index(rng, list(itertools.accumulate(cfg.csat_weights)))
        else:
            score = 1 + _pick_index(rng, list(itertools.accumulate(cfg.ces_weights)))
        body = {k: v for k, v in links.items() if v is not None}
        return self._envelope("survey.answered", now, store, response_id=self._id("r"),
                              kind=kind, score=score, **body)


def _pick_index(rng: random.Random, cumulative: list[float]) -> int:
    u = rng.random() * cumulative[-1]
    for index, edge in enumerate(cumulative):
        if u < edge:
            return index
    return len(cumulative) - 1


# -- the command: sinks, pacing, progress ------------------------------------------------

def _rfc3339_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError("an RFC 3339 time like 2024-05-14T12:00:00Z") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("an RFC 3339 time with an offset, like 2024-05-14T12:00:00Z")
    return int(moment.timestamp() * 1000)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share between 0 and 1")
    return value


def _segment(text: str) -> dict[str, str]:
    """``--treated`` in the syntax of ``cxpulse initiative declare --treated`` (one parser for both)."""
    from streams.initiatives.model import parse_segment

    return parse_segment(text) if text.strip() else {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SimConfig()
    parser.add_argument("--rate", type=float, default=defaults.rate_per_s, metavar="EVENTS_PER_S",
                        help=f"events per second (default {defaults.rate_per_s:g})")
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument("--duration", type=float, metavar="SECONDS", help="seconds of event time to generate")
    bound.add_argument("--events", type=int, metavar="N", help="number of events to send")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default 1)")
    parser.add_argument("--start", type=_rfc3339_ms, metavar="RFC3339",
                        help="event time of the first event (default: now)")
    parser.add_argument("--storefronts", type=int, default=len(defaults.storefronts), metavar="N",
                        help=f"number of simulated stores, 1-{len(STOREFRONTS)} (default {len(defaults.storefronts)})")
    parser.add_argument("--ooo-share", type=_share, default=0.0, metavar="F",
                        help="share of events sent 1-8 s late, within grace (default 0)")
    parser.add_argument("--late-share", type=_share, default=0.0, metavar="F",
                        help="share of events sent beyond --late-delay, counted late (default 0)")
    parser.add_argument("--late-delay", type=float, default=defaults.late_delay_ms / 1000, metavar="SECONDS",
                        help="how late a late event is sent (default 600)")
    parser.add_argument("--dup-share", type=_share, default=0.0, metavar="F",
                        help="share of events sent twice with the same event_id (default 0)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="none", help="an incident to simulate")
    parser.add_argument("--incident-after", type=float, default=defaults.incident_after_ms / 1000,
                        metavar="SECONDS", help="seconds of event time before the incident (default 180)")
    parser.add_argument("--support-time-scale", type=float, default=1.0, metavar="F",
                        help="multiply support delays (0.1: tickets move 10x faster; default 1)")
    parser.add_argument("--warmup", type=float, default=0, metavar="SECONDS",
                        help="simulate this long before --start without sending, so traffic starts in steady "
                             "state (cxpulse up uses 900)")
    parser.add_argument("--treated", metavar="SEGMENT", default="",
                        help="the treated segment of a CX initiative, as `cxpulse initiative declare --treated` "
                             "writes it (storefront=, channel=, device=; comma-separated): its sessions get "
                             "--conversion-uplift")
    parser.add_argument("--conversion-uplift", type=float, default=0.0, metavar="F",
                        help="relative rise of the treated segment's conversion, e.g. 0.3 for x1.3 (default 0; "
                             "cxpulse up uses 0.3 for its demo initiative)")
    parser.add_argument("--out", metavar="FILE.jsonl", help="write every sent event as a JSON line")
    parser.add_argument("--kafka", action="store_true", help="send to Kafka through the cxpulse producer")
    parser.add_argument("--bootstrap", metavar="HOST:PORT",
                        help="Kafka bootstrap servers (default: CXPULSE_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--batch-events", type=int, default=100, metavar="N",
                        help="events per Kafka message batch (default 100)")
    parser.add_argument("--pace", action=argparse.BooleanOptionalAction, default=None,
                        help="send in real time at --rate (default: on with --kafka, off for a file)")


def config_from_args(args: argparse.Namespace, now_ms: int) -> SimConfig:
    """The SimConfig of a command line; ``now_ms`` is the default start."""
    if not 1 <= args.storefronts <= len(STOREFRONTS):
        raise ConfigError(f"--storefronts {args.storefronts} is not valid: it accepts 1 to {len(STOREFRONTS)}")
    cfg = replace(
        SimConfig(),
        seed=args.seed,
        start_ms=args.start if args.start is not None else now_ms,
        rate_per_s=args.rate,
        storefronts=STOREFRONTS[: args.storefronts],
        ooo_share=args.ooo_share,
        late_share=args.late_share,
        late_delay_ms=int(args.late_delay * 1000),
        dup_share=args.dup_share,
        scenario=args.scenario,
        incident_after_ms=int(args.incident_after * 1000),
        support_time_scale=args.support_time_scale,
        warmup_ms=int(args.warmup * 1000),
        treated=_segment(args.treated),
        conversion_uplift=args.conversion_uplift,
    )
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    import orjson

    if not args.out and not args.kafka:
        raise ConfigError("simulate needs a sink: --out FILE.jsonl, --kafka, or both")
    if args.batch_events < 1:
        raise ConfigError(f"--batch-events {args.batch_events} is not valid: it accepts a positive integer")
    limit = args.events if args.events is not None else (
        int(args.duration * args.rate) if args.duration is not None else None)
    if limit is None and not args.kafka:
        raise ConfigError("a file-only run needs --events N or --duration SECONDS")
    pace = args.kafka if args.pace is None else args.pace
    cfg = config_from_args(args, now_ms=int(time.time() * 1000))
    events = generate(cfg)
    if limit is not None:
        events = itertools.islice(events, limit)

    sinks: list[Callable[[dict[str, Any]], None]] = []
    closers: list[Callable[[], None]] = []
    boundary: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    try:
        if args.out:
            out = open(args.out, "wb")
            closers.append(out.close)
            dumps = orjson.dumps
            sinks.append(lambda event: out.write(dumps(event) + b"\n"))
        if args.kafka:
            producer, boundary = _open_producer(args)
            closers.insert(0, producer.close)
            sinks.append(producer.send)
        with boundary:  # Kafka errors while sending or flushing: one line
            try:
                _pump(events, sinks, cfg, pace)
            finally:
                while closers:
                    closers.pop(0)()
    finally:
        while closers:  # when opening a sink failed
            closers.pop(0)()
    return 0


def _open_producer(args: argparse.Namespace) -> tuple[Any, contextlib.AbstractContextManager[None]]:
    """The producer, once a bootstrap server answered (within CXPULSE_CONNECT_TIMEOUT), and the
    boundary that turns Kafka errors while sending into one line."""
    from streams.config import Settings
    from streams.producer import Producer  # imported only when Kafka is wanted
    from streams.reach import bootstrap_source, kafka_boundary, require_kafka

    overrides = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    settings = Settings.from_env(flags={"bootstrap_servers": "--bootstrap"}, **overrides)
    if args.batch_events > settings.max_batch_events:
        raise ConfigError(f"--batch-events {args.batch_events} is not valid: it accepts 1 to "
                          f"{settings.max_batch_events} (CXPULSE_MAX_BATCH_EVENTS)")
    source = bootstrap_source(args.bootstrap is not None)
    require_kafka(settings, source)
    with kafka_boundary(settings, source, "the producer"):
        producer = Producer.from_settings(settings, batch_events=args.batch_events, linger_ms=50)
    return producer, kafka_boundary(settings, source, "the events sent")


def _pump(events: Iterator[dict[str, Any]], sinks: list[Callable[[dict[str, Any]], None]],
          cfg: SimConfig, pace: bool) -> None:
    """Send every event to every sink; with ``pace``, event time tracks the wall clock."""
    started = time.monotonic()
    next_report = started + 2.0
    sent = 0
    families: dict[str, int] = {}
    family_of = {name: t.family for name, t in EVENT_TYPES.items()}
    step_s = 1.0 / cfg.rate_per_s
    try:
        for event in events:
            for sink in sinks:
                sink(event)
            sent += 1
            family = family_of[event["type"]]
            families[family] = families.get(family, 0) + 1
            if pace or sent % 1024 == 0:
                wall = time.monotonic()
                if pace:
                    ahead = started + sent * step_s - wall
                    if ahead > 0.002:
                        time.sleep(ahead)
                if wall >= next_report:
                    _report("progress", sent, families, wall - started)
                    next_report = wall + 2.0
    finally:
        _report("done", sent, families, time.monotonic() - started)


def _report(what: str, sent: int, families: dict[str, int], elapsed_s: float) -> None:
    rate = sent / elapsed_s if elapsed_s > 0 else 0.0
    mix = " ".join(f"{f}={n}" for f, n in sorted(families.items()))
    print(f"cxpulse simulate: {what}: {sent} events in {elapsed_s:.1f}s ({rate:,.0f}/s) {mix}",
          file=sys.stderr, flush=True)
