"""Staff console views, one module per area; templates live in templates/console/."""

from django.contrib import messages
from django.http import HttpRequest

from hie.audit.models import Action
from hie.audit.services import record_event
from hie.console.roles import staff_actor


def query_without_page(request: HttpRequest) -> str:
    """The page's filters as a query string, for the pager's links."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def report_access_changes(request: HttpRequest, changes: list) -> None:
    """Tell the staff member what a link change did to who may see whom, and audit the re-evaluation."""
    record_event(actor=staff_actor(request), action=Action.EXECUTE, event_type="consent-reevaluated",
                 resource_type="Consent", detail={"changed": len(changes)})  # fmt: skip
    if not changes:
        messages.info(request, "No member's access changed.")
        return
    shown = [
        f"{c.requester.name} {'now sees' if c.after else 'no longer sees'} {c.record.organization.name} record "
        f"{c.record.local_id} for {c.purpose} ({c.reason})"
        for c in changes[:12]
    ]
    more = f"; and {len(changes) - 12} more" if len(changes) > 12 else ""
    messages.warning(request, "Access changed: " + "; ".join(shown) + more + ".")
