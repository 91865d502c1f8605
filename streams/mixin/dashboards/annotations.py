"""Annotations on every dashboard: each declared initiative's start and end (from Prometheus)
and the organisation's deploys and incidents (Grafana's own, by tag).
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin.dashboards.common import DATASOURCE


class PrometheusAnnotation(dm.AnnotationQuery):
    """An annotation query on the Prometheus datasource.

    The SDK for Grafana 11.6 models the fields every annotation has (and ``expr``, which
    Grafana moves into the query); Grafana's Prometheus datasource also reads ``titleFormat``,
    ``textFormat``, ``tagKeys`` and ``useValueForTime`` from the annotation itself
    (``public/app/plugins/datasource/prometheus/annotations.ts``), so this adds exactly those.
    With ``useValueForTime`` a sample's value, in ms, is the time of the event: equal values
    over the range make one marker.
    """

    OPTIONS = {"title_format": "titleFormat", "text_format": "textFormat", "tag_keys": "tagKeys",
               "use_value_for_time": "useValueForTime"}

    def __init__(self, title_format: str = "", text_format: str = "", tag_keys: str = "",
                 use_value_for_time: bool = False, **fields: Any) -> None:
        super().__init__(**fields)
        self.title_format = title_format
        self.text_format = text_format
        self.tag_keys = tag_keys
        self.use_value_for_time = use_value_for_time

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), **{key: getattr(self, attr) for attr, key in self.OPTIONS.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PrometheusAnnotation":
        common_fields = vars(dm.AnnotationQuery.from_json(data))
        return cls(**common_fields, **{attr: data[key] for attr, key in cls.OPTIONS.items() if key in data})


# (gauge, annotation name, marker colour, verb)
MARKS = (("cxpulse_initiative_start_timestamp_seconds", "Initiative starts", "green", "starts"),
         ("cxpulse_initiative_end_timestamp_seconds", "Initiative ends", "orange", "ends"))


def initiative_annotations(match: str = "") -> list[dm.AnnotationQuery]:
    """A marker at every declared initiative's first day and at its end (docs/initiatives.md).

    The gauges hold the day as Unix seconds; ``* 1000`` makes the value the marker's time in ms.
    The info series adds the KPI and the segments to the text: joined per worker (all labels but
    its own), so a re-declaration never meets its old self.
    """
    selector = f"{{{match}}}" if match else ""
    out: list[dm.AnnotationQuery] = []
    for metric, name, color, verb in MARKS:
        expr = (
            "max by (initiative, kpi, treated, control) (\n"
            f"  {metric}{selector}\n"
            "  * ignoring (kpi, treated, control) group_left (kpi, treated, control)\n"
            f"  cxpulse_initiative_info{selector}\n"
            ")\n"
            "* 1000"
        )
        out.append(PrometheusAnnotation(
            name=name, datasource=DATASOURCE, enable=True, hide=False, icon_color=color, expr=expr,
            title_format=f"{{{{initiative}}}} {verb}",
            text_format=(f"Initiative {{{{initiative}}}} {verb}: treated {{{{treated}}}}, control {{{{control}}}}, "
                         "KPI {{kpi}} (ROI on the Initiatives dashboard)."),
            tag_keys="initiative", use_value_for_time=True))
    return out


# Deploys and incidents are Grafana's own annotations, organisation-wide, found by tag: a CI
# step posts one per deploy (POST /api/annotations, tags ["deploy", ...]), and whoever runs an
# incident marks its start and end as a region (in the UI, or the same API with timeEnd).
# Unlike a Prometheus series they carry free text, span a region and need no write access to
# Prometheus; they live in Grafana's database (docs/dashboards.md, "Deploys and incidents").
GRAFANA = dm.DataSourceRef(type_val="grafana", uid="-- Grafana --")
TEAM_MARKS = (("Deploys", "deploy", "blue"), ("Incidents", "incident", "red"))


def team_annotations() -> list[dm.AnnotationQuery]:
    """Every annotation of the organisation tagged ``deploy`` or ``incident``, on every dashboard."""
    return [dm.AnnotationQuery(name=name, datasource=GRAFANA, enable=True, hide=False, icon_color=color,
                               target=dm.AnnotationTarget(limit=100, match_any=False, tags=[tag], type_val="tags"))
            for name, tag, color in TEAM_MARKS]


def load(doc: dict[str, Any]) -> dm.Dashboard:
    """A dashboard JSON document back into the model, Prometheus annotation options included."""
    dashboard = dm.Dashboard.from_json(doc)
    marks = (doc.get("annotations") or {}).get("list")
    if marks is not None:
        dashboard.annotations = dm.AnnotationContainer(list_val=[
            PrometheusAnnotation.from_json(a) if (a.get("datasource") or {}).get("type") == "prometheus"
            else dm.AnnotationQuery.from_json(a) for a in marks])
    return dashboard
