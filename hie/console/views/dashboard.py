"""The dashboard: the node at a glance."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hie.console.charts import bar_chart
from hie.console.roles import ALL_ROLES, role_required
from hie.console.selectors import HISTOGRAM_BINS, dashboard_figures


@role_required(*ALL_ROLES)
def dashboard(request: HttpRequest) -> HttpResponse:
    figures = dashboard_figures()
    histogram = bar_chart(
        figures.score_histogram,
        [f"{i / HISTOGRAM_BINS:.2f} to {(i + 1) / HISTOGRAM_BINS:.2f}" for i in range(HISTOGRAM_BINS)],
        markers=[(figures.review_threshold, "review"), (figures.auto_link_threshold, "auto-link")],
        log_scale=True,
    )
    per_day = bar_chart([n for _, n in figures.records_per_day], [d.isoformat() for d, _ in figures.records_per_day])
    return render(request, "console/dashboard.html", {"figures": figures, "histogram": histogram, "per_day": per_day})
