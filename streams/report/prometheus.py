"""The Prometheus HTTP API client of ``cxpulse report`` (urllib, no dependency).

Where the report's data enters: instant and range queries (``/api/v1/query``,
``/api/v1/query_range``), sent as POST forms because the KPI expressions with
histogram joins outgrow what some proxies accept in a URL. This is the report's
boundary: every transport, HTTP and API error becomes one ``ReportError`` that
names the URL and what to check, so the command ends in one line, never a traceback.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from streams.errors import ConfigError, ReportError


class Prometheus:
    """The HTTP API (``/api/v1/query``, ``/api/v1/query_range``) over urllib; errors become ReportError."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"--prometheus {url!r} is not valid: it accepts the server's base URL, "
                              "e.g. http://prometheus:9090")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.queries = 0

    def ping(self, timeout_s: float = 5.0) -> None:
        """One trivial query with a short timeout (at most ``timeout_s``), so that an unreachable
        or silent server fails the report in seconds rather than after the first real query's
        --timeout; a ReportError names the URL."""
        saved, self.timeout_s = self.timeout_s, min(self.timeout_s, timeout_s)
        try:
            self._api("query", {"query": "1"})
        finally:
            self.timeout_s = saved

    def instant(self, expr: str, at_s: float) -> list[tuple[dict[str, str], float]]:
        data = self._api("query", {"query": expr, "time": f"{at_s:.3f}"})
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def range(self, expr: str, start_s: float, end_s: float,
              step_s: int) -> list[tuple[dict[str, str], dict[int, float]]]:
        data = self._api("query_range", {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}",
                                         "step": str(step_s)})
        return [(r["metric"], {int(float(t)): float(v) for t, v in r["values"]}) for r in data["result"]]

    def _api(self, endpoint: str, params: dict[str, str]) -> Any:
        # POST: KPI expressions with histogram joins outgrow what some proxies accept in a URL
        request = urllib.request.Request(f"{self.url}/api/v1/{endpoint}", data=urllib.parse.urlencode(params).encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.queries += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                answer = json.loads(body)
                detail = f"{answer.get('errorType')}: {answer.get('error')}"
            except ValueError:
                raise ReportError(f"{self.url} answered HTTP {exc.code} to /api/v1/{endpoint}: is --prometheus the "
                                  f"Prometheus server's base URL (e.g. http://prometheus:9090)?") from None
            raise ReportError(f"Prometheus at {self.url} refused a query ({detail}); the query was:\n"
                              f"{params['query']}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReportError(f"cannot reach Prometheus at {self.url} (--prometheus): {reason}. Check the URL and "
                              f"that the server is up: curl {self.url}/-/ready") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise ReportError(f"{self.url}/api/v1/{endpoint} did not answer JSON: is --prometheus the Prometheus "
                              "server's base URL (e.g. http://prometheus:9090)?") from None
        if answer.get("status") != "success":
            raise ReportError(f"Prometheus at {self.url}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]
