"""The generator: a ``SimConfig`` -> endless contract-valid events, seeded, no wall clock.

One ``random.Random`` seeded from the config drives a simulation of sessions
walking the funnel, orders and their refunds and returns, support tickets and
their replies, and surveys sent and answered; events due later wait in a heap, and the messy
delivery (out of order, late, duplicated) holds some back before they are sent.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from streams.contract import SCHEMA_VERSION
from streams.devtools.simulate.model import _MIN, SOURCES, SimConfig


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
        self.visitors: list[list[str]] = [[] for _ in cfg.storefronts]  # returning visitors per store
        self.visitor_rng = random.Random(f"visitors:{cfg.seed}")  # apart: the other draws stay the same
        self.category_rng = random.Random(f"categories:{cfg.seed}")  # the same: categories change no other draw
        self.clock_ms = cfg.start_ms
        self._ts_second = -1
        self._ts_prefix = ""
        self._store_weights = list(itertools.accumulate(s.weight for s in cfg.storefronts))
        names = list(cfg.channels)
        self._channel_names = names
        self._channel_weights = list(itertools.accumulate(cfg.channels[c].weight for c in names))
        self._support_names = [c for c, _ in cfg.support_mix]
        self._support_weights = list(itertools.accumulate(w for _, w in cfg.support_mix))
        self._reasons = {kind: ([r for r, _ in mix], list(itertools.accumulate(w for _, w in mix)))
                         for kind, mix in (("order", cfg.reason_mix_after_order),
                                           ("standalone", cfg.reason_mix_standalone))}
        # shipping-delay: the extra share of orders that get a shipping ticket from the incident on
        shipping = dict(cfg.reason_mix_after_order).get("shipping", 0.0) / sum(w for _, w in cfg.reason_mix_after_order)
        self._shipping_surge = cfg.ticket_after_order_share * shipping * (cfg.shipping_surge_factor - 1)
        self._categories = ([c for c, _ in cfg.category_mix],
                            list(itertools.accumulate(w for _, w in cfg.category_mix)))
        # product-defect: the extra share of orders that get a returns ticket about the defect category
        after_order = dict(cfg.reason_mix_after_order)
        returns = after_order.get("returns_refunds", 0.0) / sum(after_order.values())
        share = dict(cfg.category_mix)[cfg.defect_category] / sum(w for _, w in cfg.category_mix)
        self._defect_surge = (cfg.ticket_after_order_share * returns * cfg.category_share * share
                              * (cfg.defect_surge_factor - 1))
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
        return self._survey_sent(now, store, "nps", customer_id=self._returning_customer(store))

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
                    if rng.random() < p_order:
                        t += rng.randint(30_000, 240_000)
                        # A broken checkout fails every order placed from the incident on, also one
                        # whose checkout began before it: orders fall at the incident, not over the
                        # 30 s to 4 min they follow their checkouts. Its draw comes only in this
                        # scenario, so runs without it stay byte for byte the same.
                        broken = (cfg.scenario == "checkout-broken" and t >= cfg.incident_at_ms
                                  and rng.random() < cfg.checkout_broken_drop)
                        if not broken:
                            self._at(t, store, lambda at: self._order_placed(at, store, common))
        source = self._sources[0][_pick_index(rng, self._sources[1])] if channel != "social" else "social"
        return self._envelope("session.started", now, store, visitor_id=self._visitor(store), source=source, **common)

    def _visitor(self, store: int) -> str:
        """A new visitor, or (``returning_visitor_share``) one of the store's earlier visitors."""
        cfg, rng, pool = self.cfg, self.visitor_rng, self.visitors[store]
        new = self._id("v")  # drawn either way: the ids of everything else stay the same
        if pool and rng.random() < cfg.returning_visitor_share:
            return pool[rng.randrange(len(pool))]
        if len(pool) < cfg.visitor_pool_size:
            pool.append(new)
        else:
            pool[rng.randrange(len(pool))] = new
        return new

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
        # One draw decides a ticket; in the shipping-delay scenario, a share above the usual one is a
        # shipping ticket (the carrier's delay), so runs without the scenario stay byte for byte the same.
        u = rng.random()
        if u < cfg.ticket_after_order_share:
            due = now + self._lognormal_ms(cfg.ticket_delay_median_ms * cfg.support_time_scale, 0.7)
            self._at(due, store, lambda at: self._ticket_created(at, store, customer, order_id))
        elif (cfg.scenario == "shipping-delay" and now >= cfg.incident_at_ms
              and u < cfg.ticket_after_order_share + self._shipping_surge):
            due = now + self._lognormal_ms(cfg.ticket_delay_median_ms * cfg.support_time_scale, 0.7)
            self._at(due, store, lambda at: self._ticket_created(at, store, customer, order_id, "shipping"))
        elif (cfg.scenario == "product-defect" and now >= cfg.incident_at_ms
              and u < cfg.ticket_after_order_share + self._defect_surge):
            due = now + self._lognormal_ms(cfg.ticket_delay_median_ms * cfg.support_time_scale, 0.7)
            self._at(due, store, lambda at: self._ticket_created(at, store, customer, order_id, "returns_refunds",
                                                                 cfg.defect_category))
        if rng.random() < cfg.nps_after_order_share:
            due = now + self._lognormal_ms(30 * _MIN, 0.6)
            self._at(due, store, lambda at: self._survey_sent(
                at, store, "nps", customer_id=customer, order_id=order_id, channel=session["channel"]))
        return self._envelope(
            "order.placed", now, store, order_id=order_id, customer_id=customer,
            session_id=session["session_id"], total_minor=total, currency=currency,
            first_order=first, **segment)

    # -- support tickets -------------------------------------------------------------

    def _ticket_created(self, now: int, store: int, customer: str | None, order_id: str | None,
                        reason: str | None = None, category: str | None = None) -> dict[str, Any]:
        cfg, rng = self.cfg, self.rng
        support = self._support_names[_pick_index(rng, self._support_weights)]
        if reason is None and rng.random() >= cfg.no_reason_share:
            names, weights = self._reasons["order" if order_id else "standalone"]
            reason = names[_pick_index(rng, weights)]
        crng = self.category_rng  # its own generator: every other draw stays as without categories
        if category is None and crng.random() < cfg.category_share:
            category = self._categories[0][_pick_index(crng, self._categories[1])]
        tagged_on_reply = category if category is not None and crng.random() < cfg.category_on_reply_share else None
        ticket_id = self._id("t")
        scale = cfg.support_time_scale
        if cfg.scenario == "support-understaffed" and now >= cfg.incident_at_ms:
            scale *= cfg.understaffed_factor
        frt_median = cfg.frt_median_min[support] * _MIN * scale

        def reply(t: int, author: str, public: bool = True, **tag: str) -> None:
            self._at(t, store, lambda at: self._envelope(
                "ticket.replied", at, store, ticket_id=ticket_id, author=author, public=public,
                support_channel=support, **tag))

        def status(t: int, type_name: str) -> None:
            self._at(t, store, lambda at: self._envelope(
                type_name, at, store, ticket_id=ticket_id, support_channel=support))

        if support in ("email", "chat", "social") and rng.random() < cfg.bot_reply_share:
            reply(now + rng.randint(2_000, 20_000), "bot")
        calendar = cfg.calendars.get(cfg.storefronts[store].name) if cfg.calendars else None

        def agent_time(since: int, work_ms: int) -> int:  # agents work only in opening hours
            return since + work_ms if calendar is None else calendar.advance(since, work_ms)

        first = agent_time(now, self._lognormal_ms(frt_median, cfg.frt_sigma))
        if rng.random() < cfg.internal_note_share:
            reply(now + int((first - now) * rng.uniform(0.2, 0.9)), "agent", public=False)
        if rng.random() < cfg.customer_chase_share:
            reply(now + int((first - now) * rng.uniform(0.3, 0.95)), "customer")
        reply(first, "agent", **({"product_category": tagged_on_reply} if tagged_on_reply else {}))
        t = first
        while rng.random() < cfg.extra_round_share:
            t += self._lognormal_ms(5 * _MIN * cfg.support_time_scale, 0.8)
            reply(t, "customer")
            t = agent_time(t, self._lognormal_ms(frt_median * 0.6, cfg.frt_sigma))
            reply(t, "agent")
        if rng.random() < cfg.resolve_share:
            t = agent_time(t, self._lognormal_ms(8 * _MIN * scale, 0.7))
            status(t, "ticket.resolved")
            if rng.random() < cfg.reopen_share:
                t += self._lognormal_ms(30 * _MIN * cfg.support_time_scale, 0.8)
                reply(t, "customer")
                status(t + 1, "ticket.reopened")
                t = agent_time(t, self._lognormal_ms(frt_median * 0.6, cfg.frt_sigma))
                reply(t, "agent")
                t = agent_time(t, self._lognormal_ms(5 * _MIN * scale, 0.7))
                status(t, "ticket.resolved")
            self._after_resolve(t, store, ticket_id, customer)
        body: dict[str, Any] = {"ticket_id": ticket_id, "support_channel": support}
        if reason:
            body["reason"] = reason
        if category and not tagged_on_reply:
            body["product_category"] = category
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
            self._at(due, store, lambda at: self._survey_sent(
                at, store, kind, customer_id=customer, ticket_id=ticket_id))

    # -- surveys ------------------------------------------------------------------------

    def _survey_sent(self, now: int, store: int, kind: str, **links: str | None) -> dict[str, Any]:
        """A survey goes out now; whether and when its customer answers is drawn here: the response
        rate of its kind, times its sales channel's factor (and the fatigue of the survey-fatigue
        scenario, without a draw of its own, so runs without it stay byte for byte the same)."""
        cfg, rng = self.cfg, self.rng
        response_id = self._id("r")
        body = {k: v for k, v in links.items() if v is not None}
        p_answer = cfg.response_rate[kind] * cfg.response_channel_factor.get(body.get("channel", ""), 1.0)
        if cfg.scenario == "survey-fatigue" and now >= cfg.incident_at_ms:
            p_answer *= cfg.fatigue_factor
        if rng.random() < p_answer:
            due = now + self._lognormal_ms(cfg.answer_delay_median_ms, 0.6)
            self._at(due, store, lambda at: self._survey_answered(at, store, kind, response_id, body))
        return self._envelope("survey.sent", now, store, response_id=response_id, kind=kind, **body)

    def _survey_answered(self, now: int, store: int, kind: str, response_id: str,
                         body: dict[str, str]) -> dict[str, Any]:
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
        return self._envelope("survey.answered", now, store, response_id=response_id, kind=kind, score=score, **body)


def _pick_index(rng: random.Random, cumulative: list[float]) -> int:
    u = rng.random() * cumulative[-1]
    for index, edge in enumerate(cumulative):
        if u < edge:
            return index
    return len(cumulative) - 1
