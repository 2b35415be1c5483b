from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "hie.audit"
    label = "audit"
    verbose_name = "Audit trail"
