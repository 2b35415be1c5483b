from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "hie.orgs"
    label = "orgs"
    verbose_name = "Member organizations"

    def ready(self) -> None:
        from oauth2_provider.signals import app_authorized

        from hie.orgs.tokens import audit_token_issued

        # The token endpoint is the library's view; its signal is the one place to hear of issuance.
        app_authorized.connect(audit_token_issued, dispatch_uid="audit-token-issued")
