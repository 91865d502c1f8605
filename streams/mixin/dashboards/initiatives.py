"""The Initiatives dashboard (``cx-initiatives``): does a CX initiative pay (docs/initiatives.md).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin.dashboards.clocks import INITIATIVE_CLOCK
from streams.mixin.dashboards.common import _help
from streams.mixin.dashboards.layout import _dashboard, _variables
from streams.mixin.dashboards.panels import (CURRENCY_LEGEND, Column, _alerts, _band_panel, _money, _series, _stat,
                                             _steps, _table, _target, _targets)
from streams.mixin.dashboards.queries import Band
from streams.mixin.intervals import Z95

INI = 'initiative=~"$initiative"'
# Recorded series of rules.initiative_rules() (streams/initiatives/rules.py), written in full so grep finds them.
ROI = "initiative:cxpulse_initiative_roi:ratio"
UPLIFT = "initiative:cxpulse_initiative_uplift:diff"
UPLIFT_RATIO = "initiative:cxpulse_initiative_uplift:ratio"
INCREMENTAL_REVENUE = "initiative:cxpulse_initiative_incremental_revenue:estimate"
INCREMENTAL_PROFIT = "initiative:cxpulse_initiative_incremental_profit:estimate"
ROI_MEANS = ("ROI = (incremental profit - investment) / investment, where incremental profit = gross margin x "
             "incremental revenue and incremental revenue = uplift x treated sessions (RPV), x treated sessions x "
             "AOV(treated) (conversion) or x treated orders (AOV). 0 is break-even: the profit paid the investment "
             "back; 100% is twice over.")
INTERVAL_MEANS = ("The 95% interval is the normal approximation of the difference of the two arms' means; it "
                  "covers sampling noise only, not a control that differs from the treated segment for other "
                  "reasons. Both bounds above 0: the evidence says it pays; both below: it does not; across 0: not "
                  "enough evidence yet.")
CURRENCY_NOTE = " Money in the initiative's currency (legend and unit); only orders in that currency count."


def _in_currency(expr: str) -> str:
    """An initiative's money series with the initiative's ``currency`` label (from its declared
    investment), so the legend ends in the code and the money overrides give it its unit."""
    return (f"{expr}\n* on (initiative) group_left (currency)\n"
            f"  (0 * max by (initiative, currency) (cxpulse_initiative_investment{{{INI}}}) + 1)")


def _arm_band(short: str, title: str, what: str, unit: str) -> timeseries.Panel:
    """An arm's KPI (treated blue, control dashed grey) with a 95% band from its recorded standard error."""
    def band(arm: str) -> Band:
        kpi = f"initiative:cxpulse_initiative_{arm}_{short}:ratio{{{INI}}}"
        se2 = f"initiative:cxpulse_initiative_{arm}_{short}:squared_stderr{{{INI}}}"
        return Band((kpi, arm), (f"clamp_min(\n  {kpi}\n  - {Z95} * sqrt({se2}),\n  0\n)", f"{arm} 95% lower"),
                    (f"{kpi}\n+ {Z95} * sqrt({se2})", f"{arm} 95% upper"))

    return _band_panel(
        f"{title} per arm, $initiative",
        f"{what} of each arm over its segment and days (`initiative:cxpulse_initiative_<arm>_{short}:ratio`): "
        "treated "
        f"(blue) and control (dashed, grey). The bands are each mean +- {Z95:.2f} standard errors "
        f"(`...:squared_stderr`, the squared standard error the ROI interval is built from). Bands apart: the arms "
        "differ beyond sampling noise." + (" In the initiative's currency (the table above): a band's series names "
                                            "must be fixed, so the unit stays plain." if unit == "none" else ""),
        unit, band("treated"), other=band("control"), span=8, clock=INITIATIVE_CLOCK)


def initiatives() -> dm.Dashboard:
    return _dashboard(
        "cx-initiatives", "Initiatives",
        "Does a CX initiative pay? Per declared initiative: the uplift of its KPI in the treated segment over the "
        "control, the incremental revenue and profit, and the ROI with its 95% interval, live; each arm's "
        "RPV, conversion and AOV and its sample size (docs/initiatives.md).",
        _variables("initiative"),
        [
            ("Declared initiatives", _declared()),
            ("ROI: $initiative", _roi(), "initiative"),
            ("Treated and control arms: $initiative", _arms(), "initiative"),
            ("Alerts", [_alerts(["CxpulseConversionDrop", "CxpulseRevenuePerVisitorDrop", "CxpulseEventsSilent",
                                 "CxpulseNoWorkerReady"])]),
        ],
        marks=INI, since="now-7d",
    )


def _declared() -> list[table.Panel]:
    """Every declared initiative: its KPI, segments, days, investment, profit so far and ROI."""
    end = (f"max by (initiative) (cxpulse_initiative_end_timestamp_seconds{{{INI}}}) * 1000\n"
           f"or on (initiative)\n  0 * max by (initiative) (cxpulse_initiative_info{{{INI}}})")
    return [
        _table("Declared initiatives", (
            "Every declared initiative (`cxpulse initiative declare`, docs/initiatives.md) from "
            "cxpulse_initiative_info: the KPI its uplift is of, the treated segment and the control (another "
            "segment over the same days, or `before`: the treated segment over the days before the start), its "
            "first day and the day after its last (`running` while it has no end), the investment in its currency, "
            f"the gross margin, the incremental profit so far and the ROI with its 95% interval. {ROI_MEANS}"),
            ["initiative", "kpi", "treated", "control", "currency"],
            [Column(f"max by (initiative, kpi, treated, control) (cxpulse_initiative_info{{{INI}}})", "declared",
                    hidden=True),
             Column(f"max by (initiative) (cxpulse_initiative_start_timestamp_seconds{{{INI}}}) * 1000", "start",
                    "dateTimeAsIso"),
             Column(end, "end", "dateTimeAsIso", text=(("0", "running"),)),
             Column(f"max by (initiative, currency) (cxpulse_initiative_investment{{{INI}}})", "investment",
                    decimals=2),
             Column(f"max by (initiative) (cxpulse_initiative_gross_margin_ratio{{{INI}}})", "gross margin",
                    "percentunit", 0),
             Column(f"{INCREMENTAL_PROFIT}{{{INI}}}", "incremental profit", decimals=2),
             Column(f"{ROI}{{{INI}}}", "ROI", "percentunit", 1),
             Column(f"{ROI}_lower{{{INI}}}", "ROI 95% lower", "percentunit", 1),
             Column(f"{ROI}_upper{{{INI}}}", "ROI 95% upper", "percentunit", 1)],
            sort=("initiative", False), span=24, height=7, clock=INITIATIVE_CLOCK),
    ]


def _roi() -> list[stat.Panel | timeseries.Panel]:
    """The ROI with its interval, the uplift and the incremental revenue and profit: tiles, then over time."""
    ini = "{{initiative}}"
    break_even = _steps((None, "red"), (0, "green"))
    return [
        _stat("ROI", f"{ROI_MEANS} Recording rule `{ROI}`; green from break-even up.",
              "percentunit", [_target(f"{ROI}{{{INI}}}", ini)], clock=INITIATIVE_CLOCK, thresholds=break_even,
              decimals=1),
        _stat("ROI 95% interval", f"Lower and upper bound of the ROI's 95% interval "
              f"(`{ROI}_lower`, `..._upper`). {INTERVAL_MEANS}", "percentunit",
              _targets((f"{ROI}_lower{{{INI}}}", "lower"),
                       (f"{ROI}_upper{{{INI}}}", "upper")), clock=INITIATIVE_CLOCK, thresholds=break_even,
              decimals=1),
        _stat("Uplift", f"KPI(treated) - KPI(control) (`{UPLIFT}`), in the unit of the "
              "initiative's KPI (table above): money per session for revenue per visitor, a share (0.01 = 1 "
              "point) for conversion, money per order for average order value. Its unit follows the KPI, so it "
              "stays plain.", "none",
              [_target(f"{UPLIFT}{{{INI}}}", ini)], clock=INITIATIVE_CLOCK, thresholds=break_even),
        _stat("Relative uplift", f"Uplift / KPI(control) (`{UPLIFT_RATIO}`): +10% means "
              "the treated segment did 10% better than the control on the initiative's KPI.", "percentunit",
              [_target(f"{UPLIFT_RATIO}{{{INI}}}", ini)], clock=INITIATIVE_CLOCK, thresholds=break_even, decimals=1),
        _money(_stat("Incremental revenue", f"Revenue the initiative added (`{INCREMENTAL_REVENUE}`)"
                     ": uplift x treated sessions for revenue per visitor, uplift x treated sessions x AOV(treated) "
                     f"for conversion, uplift x treated orders for average order value.{CURRENCY_NOTE}", "none",
                     [_target(_in_currency(f"{INCREMENTAL_REVENUE}{{{INI}}}"), f"{ini} {CURRENCY_LEGEND}")],
                     clock=INITIATIVE_CLOCK, thresholds=break_even, decimals=2)),
        _money(_stat("Incremental profit", "Gross margin x incremental revenue "
                     f"(`{INCREMENTAL_PROFIT}`): what the ROI compares with the investment."
                     f"{CURRENCY_NOTE}", "none",
                     [_target(_in_currency(f"{INCREMENTAL_PROFIT}{{{INI}}}"), f"{ini} {CURRENCY_LEGEND}")],
                     clock=INITIATIVE_CLOCK, thresholds=break_even, decimals=2)),
        _band_panel(
            "ROI with its 95% interval, $initiative",
            f"{ROI_MEANS} Line: `{ROI}`; band: `..._lower` to `..._upper`. "
            f"{INTERVAL_MEANS} Dashed line: break-even (ROI 0). The band narrows as both arms collect sessions.",
            "percentunit",
            Band((f"{ROI}{{{INI}}}", "ROI"),
                 (f"{ROI}_lower{{{INI}}}", "ROI 95% lower"),
                 (f"{ROI}_upper{{{INI}}}", "ROI 95% upper")),
            thresholds=_steps((None, "transparent"), (0, "red")), clock=INITIATIVE_CLOCK),
        _money(_series("Incremental revenue and profit against the investment, $initiative", (
            f"Incremental revenue (`{INCREMENTAL_REVENUE}`), incremental profit (gross "
            "margin x incremental revenue) and the declared investment (cxpulse_initiative_investment, dashed). "
            f"Profit above the investment is a positive ROI.{CURRENCY_NOTE}"), "none",
            _targets((_in_currency(f"{INCREMENTAL_REVENUE}{{{INI}}}"), f"incremental revenue {CURRENCY_LEGEND}"),
                     (_in_currency(f"{INCREMENTAL_PROFIT}{{{INI}}}"), f"incremental profit {CURRENCY_LEGEND}"),
                     (f"max by (initiative, currency) (cxpulse_initiative_investment{{{INI}}})",
                      f"investment {CURRENCY_LEGEND}")),
            dashed="investment.*", clock=INITIATIVE_CLOCK)),
        _series("Uplift, $initiative", f"KPI(treated) - KPI(control) over time (`{UPLIFT}`)"
                ", in the unit of the initiative's KPI: money per session (revenue per visitor), a share "
                "(conversion) or money per order (average order value). Dashed line: no difference.", "none",
                _targets((f"{UPLIFT}{{{INI}}}", "uplift")),
                thresholds=_steps((None, "transparent"), (0, "text")), clock=INITIATIVE_CLOCK),
        _series("Relative uplift, $initiative", "Uplift / KPI(control) over time "
                f"(`{UPLIFT_RATIO}`). Dashed line: no difference.", "percentunit",
                _targets((f"{UPLIFT_RATIO}{{{INI}}}", "relative uplift")),
                thresholds=_steps((None, "transparent"), (0, "text")), clock=INITIATIVE_CLOCK),
    ]


def _arms() -> list[timeseries.Panel]:
    """Each arm's RPV, conversion and AOV with its band, and its sessions and orders."""
    return [
        _arm_band("rpv", "Revenue per visitor", "Revenue / sessions (RPV, money per session; an order per session at "
                  "most, sessions without an order count 0)", "none"),
        _arm_band("conversion", "Conversion", "Orders / sessions (CVR)", "percentunit"),
        _arm_band("aov", "Average order value", "Revenue / orders (AOV, money per order)", "none"),
        _series("Sessions per arm, $initiative", f"{_help('cxpulse_initiative_sessions')} Summed over workers: the "
                "sample size behind RPV and conversion. A small arm means a wide interval.", "short",
                _targets((f"sum by (arm) (cxpulse_initiative_sessions{{{INI}}})", "{{arm}}")),
                clock=INITIATIVE_CLOCK),
        _series("Orders per arm, $initiative", f"{_help('cxpulse_initiative_orders')} Summed over workers: the "
                "sample size behind AOV.", "short",
                _targets((f"sum by (arm) (cxpulse_initiative_orders{{{INI}}})", "{{arm}}")),
                clock=INITIATIVE_CLOCK),
    ]
