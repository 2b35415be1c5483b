"""Probes for the orchestrator: /healthz (the process answers) and /readyz (its services do)."""

import logging

import redis
from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny

logger = logging.getLogger(__name__)


def probe(view):
    """An unauthenticated GET endpoint, described in the OpenAPI schema."""
    return api_view(["GET"])(authentication_classes([])(permission_classes([AllowAny])(never_cache(view))))


HEALTH = inline_serializer("Health", {"status": serializers.CharField()})
READINESS = inline_serializer(
    "Readiness", {"status": serializers.CharField(), "checks": serializers.DictField(child=serializers.CharField())}
)


@extend_schema(summary="Liveness: the process answers", responses={200: HEALTH}, tags=["operations"])
@probe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def database_reachable() -> bool:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        logger.warning("readiness: database unreachable")
        return False


def broker_reachable() -> bool:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return True  # embedded mode: tasks run inline, no broker to reach
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        logger.warning("readiness: broker unreachable")
        return False


@extend_schema(
    summary="Readiness: the database and the broker are reachable",
    responses={200: READINESS, 503: OpenApiResponse(READINESS, description="a named service is down")},
    tags=["operations"],
)
@probe
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": database_reachable(), "broker": broker_reachable()}
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {k: "ok" if v else "down" for k, v in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)
