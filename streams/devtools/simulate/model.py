"""The simulation's model: every knob (``SimConfig``) with its default and its checks.

Stores with their currency and order value, sales channels with their funnels and
devices, the day's shape, the support channels and how fast agents answer, the
incident scenarios, the messy-delivery shares and a CX initiative's uplift. The
generator (``generator.py``) reads these and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from streams.business_hours import NONE as NO_CALENDARS, Calendars
from streams.errors import ConfigError

Scenario = Literal["none", "checkout-broken", "support-understaffed", "survey-fatigue", "shipping-delay",
                   "product-defect"]
SCENARIOS: tuple[Scenario, ...] = ("none", "checkout-broken", "support-understaffed", "survey-fatigue",
                                   "shipping-delay", "product-defect")
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
# Why customers get in touch (the ticket's reason, streams.contract.REASONS). After an order: mostly
# where it is, its delivery and sending it back; without one: questions before buying and the account.
REASON_MIX_AFTER_ORDER: tuple[tuple[str, float], ...] = (
    ("order_status", 0.30), ("shipping", 0.22), ("returns_refunds", 0.20), ("product_question", 0.10),
    ("payment", 0.09), ("technical", 0.05), ("account", 0.02), ("other", 0.02),
)
REASON_MIX_STANDALONE: tuple[tuple[str, float], ...] = (
    ("product_question", 0.34), ("account", 0.24), ("technical", 0.16), ("payment", 0.10), ("other", 0.10),
    ("order_status", 0.06),
)
# What the tickets are about (their product_category): a shop's catalog, by share of the tickets with one.
CATEGORY_MIX: tuple[tuple[str, float], ...] = (
    ("apparel", 0.28), ("footwear", 0.18), ("electronics", 0.16), ("home", 0.14), ("beauty", 0.12),
    ("toys", 0.07), ("sports", 0.05),
)
# Median first public agent reply, minutes (lognormal around it).
FRT_MEDIAN_MIN: dict[SupportChannel, float] = {
    "email": 35.0, "chat": 2.0, "phone": 1.0, "social": 20.0, "sms": 12.0,
}
# Share of the surveys sent that get an answer, by kind; an NPS survey after an order carries the
# order's sales channel, whose customers answer more (app) or less (social) than the web's.
RESPONSE_RATE: dict[str, float] = {"nps": 0.30, "csat": 0.52, "ces": 0.45}
RESPONSE_CHANNEL_FACTOR: dict[str, float] = {"web": 1.0, "app": 1.3, "social": 0.5, "marketplace": 0.75}
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
    # Sessions of a returning visitor (a visitor_id seen before, from a pool per store): visitor-based CVR
    # differs from session-based CVR. Drawn from a generator of their own: other draws stay as they were.
    returning_visitor_share: float = 0.35
    visitor_pool_size: int = 2_000
    standalone_ticket_weight: float = 0.01  # pre-sales and account questions
    standalone_survey_weight: float = 0.06  # relationship NPS surveys sent, not tied to anything
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
    # Support calendars (CXPULSE_BUSINESS_HOURS): a storefront with one has agents who reply and resolve
    # only while it is open, so a ticket created at night waits for the morning.
    calendars: Calendars = NO_CALENDARS
    ticket_after_order_share: float = 0.06  # "where is my order?"
    ticket_delay_median_ms: int = 20 * _MIN
    bot_reply_share: float = 0.6  # on email, chat and social
    internal_note_share: float = 0.25
    customer_chase_share: float = 0.15  # customer writes again before the first agent reply
    extra_round_share: float = 0.45  # P(another customer/agent exchange), repeated
    resolve_share: float = 0.95
    reopen_share: float = 0.08
    reason_mix_after_order: tuple[tuple[str, float], ...] = REASON_MIX_AFTER_ORDER
    reason_mix_standalone: tuple[tuple[str, float], ...] = REASON_MIX_STANDALONE
    no_reason_share: float = 0.05  # tickets created without a reason (an older form): `unknown`
    category_mix: tuple[tuple[str, float], ...] = CATEGORY_MIX
    category_share: float = 0.85  # tickets about a product category (the rest: accounts, payments, ...)
    # Of those, the share the agent tags on the first public reply instead of the contact form at creation.
    category_on_reply_share: float = 0.15
    # Surveys: each is sent (survey.sent), then answered (survey.answered, same response_id) by a
    # share of its customers, the response rate, after a delay; the shares below are of surveys sent.
    nps_mix: tuple[float, float, float] = (0.50, 0.30, 0.20)  # promoter, passive, detractor
    csat_weights: tuple[float, ...] = (0.05, 0.05, 0.10, 0.30, 0.50)  # scores 1..5
    ces_weights: tuple[float, ...] = (0.04, 0.05, 0.08, 0.13, 0.20, 0.25, 0.25)  # scores 1..7
    nps_after_order_share: float = 0.40  # orders whose customer is sent an NPS survey
    csat_after_ticket_share: float = 0.67  # resolved tickets sent a CSAT survey
    ces_after_ticket_share: float = 0.33  # resolved tickets sent a CES survey instead
    response_rate: dict[str, float] = field(default_factory=lambda: dict(RESPONSE_RATE))
    response_channel_factor: dict[str, float] = field(default_factory=lambda: dict(RESPONSE_CHANNEL_FACTOR))
    answer_delay_median_ms: int = 5 * _MIN  # survey sent -> answered, lognormal; compressed: hours in real life
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
    checkout_broken_drop: float = 0.8  # share of orders that fail from the incident on
    understaffed_factor: float = 5.0  # agent reply delays multiply by this
    fatigue_factor: float = 0.3  # survey-fatigue: response rates multiply by this, scores unchanged
    shipping_surge_factor: float = 4.0  # shipping-delay: "where is my parcel" tickets after orders x this
    # product-defect: a faulty batch; returns & refunds tickets about this category after orders, x the factor.
    defect_category: str = "electronics"
    defect_surge_factor: float = 5.0

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
        for name in ("ooo_share", "late_share", "dup_share", "repeat_customer_share", "returning_visitor_share",
                     "refund_share",
                     "return_share", "ticket_after_order_share", "reopen_share", "resolve_share",
                     "checkout_broken_drop", "nps_after_order_share", "csat_after_ticket_share",
                     "ces_after_ticket_share", "fatigue_factor", "no_reason_share", "category_share",
                     "category_on_reply_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "a share between 0 and 1")
        if self.csat_after_ticket_share + self.ces_after_ticket_share > 1.0:
            fail("ces_after_ticket_share", "a share with csat_after_ticket_share + ces_after_ticket_share <= 1")
        factors = [1.0, *self.response_channel_factor.values()]
        if min(factors) < 0.0:
            fail("response_channel_factor", "factors of 0 or more")
        if set(self.response_rate) != {"nps", "csat", "ces"} or not all(
                0.0 <= rate and rate * max(factors) <= 1.0 for rate in self.response_rate.values()):
            fail("response_rate", "a share for each of nps, csat and ces that stays <= 1 times any "
                 "response_channel_factor")
        from streams.contract import REASONS
        for name in ("reason_mix_after_order", "reason_mix_standalone"):
            mix = getattr(self, name)
            if not mix or any(r not in REASONS or w < 0 for r, w in mix) or sum(w for _, w in mix) <= 0:
                fail(name, f"(reason, weight) pairs of {', '.join(REASONS)} with weights >= 0, not all 0")
        if not self.shipping_surge_factor >= 1.0:
            fail("shipping_surge_factor", "a factor of 1 or more")
        if not self.defect_surge_factor >= 1.0:
            fail("defect_surge_factor", "a factor of 1 or more")
        weights = [w for _, w in self.category_mix]
        if not weights or min(weights) < 0 or sum(weights) <= 0:
            fail("category_mix", "(category, weight) pairs with weights >= 0, not all 0")
        mix = dict(self.category_mix)
        if self.defect_category not in mix or mix[self.defect_category] <= 0:
            fail("defect_category", "a category of category_mix with a weight above 0")
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
