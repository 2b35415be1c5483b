"""Staff console views, one module per area; templates live in templates/console/."""

from django.http import HttpRequest


def query_without_page(request: HttpRequest) -> str:
    """The page's filters as a query string, for the pager's links."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()
