"""Member organizations, the identifier systems they assign, their API clients, and what
proves an HL7 v2 sender to be one of them (a client certificate, an allow-listed address)."""

import ipaddress

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

    def proves_hl7_sender(self, *, address: str, certificate_sha256: str = "") -> bool:
        """Whether a connection from this address (with this TLS client certificate, if any) speaks
        for this member. MSH-4 alone proves nothing: any system that reaches the port can write it.
        Reads the member's certificates and networks as prefetched (the listener caches members)."""
        if certificate_sha256 and any(c.sha256 == certificate_sha256 for c in self.hl7_certificates.all()):
            return True
        try:
            host = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped:
            host = host.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        return any(host in ipaddress.ip_network(n.network) for n in self.hl7_source_networks.all())


class IdentifierSystem(models.Model):
    """A namespace (OID or URI) under which one organization assigns local patient identifiers.

    Each system belongs to exactly one organization: that is what lets the node refuse a
    client writing identifiers in another member's namespace.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="identifier_systems")
    uri = models.CharField(max_length=255, unique=True)

    def __str__(self) -> str:
        return self.uri


class HL7Certificate(models.Model):
    """A TLS client certificate that a member's interface engine presents to the MLLP listener.

    Known by its SHA-256 fingerprint, so that only this certificate (not any other the CA signs
    with the same subject) speaks for the member; a member may hold several while it rotates.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="hl7_certificates")
    sha256 = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 fingerprint of the certificate (DER), lowercase hex"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.organization} certificate {self.sha256[:16]}…"


class HL7SourceNetwork(models.Model):
    """Addresses from which a plain (or TLS) MLLP connection speaks for the member, as a network
    (a single host is /32 or /128). Several members may share one, e.g. behind one interface engine;
    MSH-4 then says which of them sends."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="hl7_source_networks")
    network = models.CharField(max_length=49, help_text="e.g. 10.20.0.0/24 or 127.0.0.1/32")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "network"], name="hl7_source_network_once")]

    def __str__(self) -> str:
        return f"{self.organization} from {self.network}"


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
