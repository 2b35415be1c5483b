"""Member organizations, the identifier systems they assign, and their API clients."""

from django.db import models
from django.utils.functional import cached_property
from oauth2_provider.models import AbstractApplication


class Organization(models.Model):
    """A member of the exchange: a hospital, clinic or lab."""

    name = models.CharField(max_length=200, unique=True)
    hl7_facility = models.CharField(
        max_length=180, unique=True, null=True, blank=True, help_text="HL7 v2 sending facility (MSH-4) code"
    )
    fhir_endpoint = models.URLField(blank=True, help_text="FHIR base URL used to fetch documents it holds")
    default_purpose_of_use = models.CharField(
        max_length=20,
        blank=True,
        help_text="HL7 PurposeOfUse code of its reads when neither the access token nor the request names one",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @cached_property
    def identifier_system_uris(self) -> list[str]:
        return [system.uri for system in self.identifier_systems.all()]


class IdentifierSystem(models.Model):
    """A namespace (OID or URI) under which one organization assigns local patient identifiers.

    Each system belongs to exactly one organization: that is what lets the node refuse a
    client writing identifiers in another member's namespace.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="identifier_systems")
    uri = models.CharField(max_length=255, unique=True)

    def __str__(self) -> str:
        return self.uri


class ApiClient(AbstractApplication):
    """An OAuth2 client (client credentials grant) bound to exactly one organization."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="api_clients")
    allowed_scopes = models.TextField(help_text="Space-separated SMART backend-services scopes")
    purposes_of_use = models.TextField(
        blank=True, help_text="Space-separated HL7 PurposeOfUse codes the client may read under"
    )
    # SMART client-confidential-asymmetric: the public keys that verify its client assertions,
    # registered as a JWK Set, or the https URL the node fetches one from.
    jwks = models.JSONField(null=True, blank=True, help_text="Public JWK Set of the client's assertion keys")
    jwks_uri = models.URLField(blank=True, help_text="URL of the client's public JWK Set")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"

    def is_usable(self, request: object) -> bool:
        # Checked by the token endpoint and on every bearer token: revocation is immediate.
        return self.usable(self.revoked_at, self.organization.active)

    @staticmethod
    def usable(revoked_at: object, organization_active: bool) -> bool:
        """The rule behind is_usable, for readers that fetched the two values themselves."""
        return revoked_at is None and organization_active

    @property
    def scope_list(self) -> list[str]:
        return self.allowed_scopes.split()

    @property
    def purpose_list(self) -> list[str]:
        return self.purposes_of_use.split()


class UsedClientAssertion(models.Model):
    """The jti of every client assertion accepted, until it expires: an assertion is good once
    (RFC 7523 §3, SMART Backend Services)."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="used_assertions")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "jti"], name="client_assertion_used_once")]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.jti}"
