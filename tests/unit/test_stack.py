"""``cxpulse up``'s demo initiative, without starting anything: what it declares and simulates.

The running stack is tested end to end in tests/e2e/test_up.py; these check that the
declaration and the simulated effect describe the same initiative, and the flags.
"""

from __future__ import annotations

import argparse

import pytest

from streams.devtools import stack
from streams.devtools.simulate import SimConfig
from streams.devtools.simulate import add_arguments as simulate_arguments
from streams.devtools.simulate import config_from_args
from streams.errors import ConfigError
from streams.initiatives import cli
from streams.initiatives.model import Initiative, day_ms

DAY = "2026-03-02"


def up_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    stack.add_arguments(parser)
    return parser.parse_args(list(argv))


def simulator_config(argv: list[str]) -> SimConfig:
    """The SimConfig the stack's simulator process would run with."""
    assert argv[:4] == [argv[0], "-m", "streams.cli", "simulate"], argv
    parser = argparse.ArgumentParser()
    simulate_arguments(parser)
    return config_from_args(parser.parse_args(argv[4:]), now_ms=day_ms(DAY))


def declared(demo: stack.DemoInitiative) -> Initiative:
    """What `cxpulse initiative` makes of the stack's declaration."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.build(parser.parse_args(demo.declare_argv(DAY, "127.0.0.1:9092")))


def test_the_declared_treated_arm_is_the_one_the_simulator_lifts() -> None:
    demo = stack.demo_initiative(up_args())
    assert demo is not None
    initiative = declared(demo)
    cfg = simulator_config(stack.simulator_command(up_args(), "127.0.0.1:9092", demo))
    assert cfg.treated == initiative.treated == {"storefront": "north-outfitters"}
    assert cfg.conversion_uplift == demo.conversion_uplift > 0
    assert initiative.control == {"storefront": "fern-and-field"}
    assert (initiative.start_ms, initiative.end_ms) == (day_ms(DAY), None)  # from the day it runs on
    assert initiative.kpi == "conversion"


def test_the_control_store_is_simulated_and_counted_in_the_same_currency() -> None:
    """Revenue counts in the initiative's currency only; both stores must sell in it, and be
    among the stores the stack simulates, or an arm stays empty and there is no ROI."""
    demo = stack.DemoInitiative()
    initiative = declared(demo)
    cfg = simulator_config(stack.simulator_command(up_args(), "127.0.0.1:9092", demo))
    currency = {store.name: store.currency for store in cfg.storefronts}
    for segment in (initiative.treated, initiative.control):
        assert currency[segment["storefront"]] == initiative.currency, (segment, currency)
    # only the treated store is lifted
    assert not cfg.in_treated(initiative.control["storefront"], "web", "desktop")
    assert cfg.in_treated(initiative.treated["storefront"], "web", "desktop")


def test_no_demo_initiative_declares_nothing_and_simulates_no_uplift() -> None:
    args = up_args("--no-demo-initiative")
    assert stack.demo_initiative(args) is None
    cfg = simulator_config(stack.simulator_command(args, "127.0.0.1:9092", None))
    assert cfg.treated == {} and cfg.conversion_uplift == 0


def test_demo_uplift_is_passed_on_and_checked_before_anything_starts() -> None:
    demo = stack.demo_initiative(up_args("--demo-uplift", "0.1"))
    assert demo is not None and demo.conversion_uplift == 0.1
    assert simulator_config(stack.simulator_command(up_args(), "127.0.0.1:9092", demo)).conversion_uplift == 0.1
    with pytest.raises(ConfigError, match="--demo-uplift 0.9"):
        stack.demo_initiative(up_args("--demo-uplift", "0.9"))  # P(order | checkout) would pass 1


def test_up_offers_every_simulated_scenario_and_passes_it_on() -> None:
    from streams.devtools.simulate import SCENARIOS

    parser = argparse.ArgumentParser()
    stack.add_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "scenario")
    assert tuple(choices) == SCENARIOS
    args = up_args("--scenario", "survey-fatigue", "--incident-after", "60")
    cfg = simulator_config(stack.simulator_command(args, "127.0.0.1:9092", None))
    assert (cfg.scenario, cfg.incident_after_ms) == ("survey-fatigue", 60_000)
