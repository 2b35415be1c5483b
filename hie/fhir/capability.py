"""The CapabilityStatement at /fhir/metadata and the SMART configuration at
/fhir/.well-known/smart-configuration: exactly what this node's FHIR API supports."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from hie.fhir.auth import fhir_view
from hie.fhir.conventions import PURPOSE_SYSTEM
from hie.fhir.patient_search import SEARCH_PARAMETERS
from hie.fhir.responses import fhir_response
from hie.orgs.oauth import ASSERTION_ALGORITHMS
from hie.orgs.scopes import PURPOSE_SCOPE_PREFIX, supported_scopes


def capability_statement(base_url: str) -> CapabilityStatement:
    purposes = ", ".join(sorted(settings.FHIR_PURPOSES_OF_USE))
    base = settings.HIE_CANONICAL_BASE
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "software": {"name": "HIE node"},
        "implementation": {"description": "Health information exchange node", "url": base_url},
        "instantiates": [
            "https://profiles.ihe.net/ITI/PIXm/CapabilityStatement/IHE.PIXm.Manager",
            "https://profiles.ihe.net/ITI/PDQm/CapabilityStatement/IHE.PDQm.Supplier",
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient",
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder",
        ],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    f"Every read has a purpose of use ({PURPOSE_SYSTEM}: {purposes}): the one the access token "
                    f"carries ({PURPOSE_SCOPE_PREFIX}CODE scopes), else the member's default; the optional "
                    "X-Purpose-Of-Use header narrows it to another purpose the token carries. "
                    f"Each client may send {settings.FHIR_RATE_LIMIT} requests per "
                    f"{settings.FHIR_RATE_WINDOW} s; beyond that the answer is 429 with Retry-After."
                ),
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": (
                        "SMART Backend Services: OAuth2 client credentials (one client per member organization) "
                        f"at {base_url.removesuffix('/fhir')}/oauth/token, the client authenticated by a signed "
                        "client assertion (private_key_jwt) or its shared secret; SMART v1 or v2 system scopes "
                        "(see .well-known/smart-configuration)"
                    ),
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [
                                {"url": "token", "valueUri": f"{base_url.removesuffix('/fhir')}/oauth/token"},
                                {"url": "revoke", "valueUri": f"{base_url.removesuffix('/fhir')}/oauth/revoke_token"},
                            ],
                        }
                    ],
                },
                "resource": [
                    {
                        "type": "Patient",
                        "documentation": "Numeric ids are members' records; ids starting with E are persons (EUID).",
                        "interaction": [
                            {"code": "read"},
                            {"code": "search-type"},
                            {"code": "create"},
                            {"code": "update"},
                            {"code": "delete", "documentation": "Conditional delete by identifier withdraws a record"},
                        ],
                        "versioning": "versioned-update",
                        "readHistory": False,
                        "updateCreate": False,
                        "conditionalCreate": False,
                        "conditionalUpdate": True,
                        "conditionalDelete": "single",
                        "searchParam": [
                            {"name": name, "type": kind, "documentation": text}
                            for name, (kind, text) in SEARCH_PARAMETERS.items()
                        ],
                        "operation": [
                            {
                                "name": "ihe-pix",
                                "definition": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
                            },
                            {"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"},
                            {
                                "name": "break-glass",
                                "definition": f"{settings.HIE_CANONICAL_BASE}/OperationDefinition/Patient-break-glass",
                                "documentation": "emergency access (purpose BTG or ETREAT): reason, minutes",
                            },
                            {
                                "name": "gather-documents",
                                "definition": f"{base}/OperationDefinition/Patient-gather-documents",
                                "documentation": "ask every custodian of the patient for its current documents; "
                                "answers a Task (Idempotency-Key header makes it idempotent)",
                            },
                        ],
                    },
                    {
                        "type": "Consent",
                        "documentation": (
                            "IHE PCF: patient-privacy consents a member records for a patient it registered, "
                            "under its own identifier; only that member reads, changes or withdraws them (an "
                            "update to status inactive, or delete, which withdraws and keeps the history). The "
                            "signed form, when one was sent, is at Consent/{id}/form."
                        ),
                        "interaction": [
                            {"code": "read"},
                            {"code": "vread"},
                            {"code": "create"},
                            {"code": "update"},
                            {"code": "delete"},
                            {"code": "search-type"},
                        ],
                        "versioning": "versioned-update",
                        "readHistory": False,
                        "searchParam": [
                            {"name": "patient", "type": "reference", "documentation": "Patient/{EUID}"},
                            {
                                "name": "patient.identifier",
                                "type": "token",
                                "documentation": "any identifier of the person; finds the member's own consents",
                            },
                            {"name": "status", "type": "token"},
                            {"name": "actor", "type": "reference", "documentation": "Organization/{id}"},
                            {"name": "date", "type": "date", "documentation": "date recorded"},
                        ],
                    },
                    {
                        "type": "Organization",
                        "documentation": "The member directory; no purpose of use is needed.",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                    },
                    {
                        "type": "DocumentReference",
                        "documentation": (
                            "MHD: register with a transaction Bundle (ITI-65) at the base URL; find (ITI-67) the "
                            "documents of every member holding records of the person, after consent; status is "
                            "required. Search also as a form POST to DocumentReference/_search."
                        ),
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": name, "type": kind}
                            for name, kind in (
                                ("patient", "reference"),
                                ("patient.identifier", "token"),
                                ("status", "token"),
                                ("type", "token"),
                                ("category", "token"),
                                ("date", "date"),
                                ("period", "date"),
                                ("creation", "date"),
                                ("author.given", "string"),
                                ("author.family", "string"),
                                ("facility", "token"),
                                ("event", "token"),
                                ("setting", "token"),
                                ("format", "token"),
                                ("security-label", "token"),
                                ("identifier", "token"),
                                ("related", "token"),
                            )
                        ],
                    },
                    {
                        "type": "List",
                        "profile": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.List",
                        "documentation": (
                            "MHD SubmissionSets stored from ITI-65, found with ITI-66 (code submissionset); only "
                            "the documents the requester may see are listed. Scope system/DocumentReference.read."
                        ),
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": "patient", "type": "reference", "documentation": "Patient/{EUID}"},
                            {"name": "patient.identifier", "type": "token", "documentation": "any identifier"},
                            {"name": "code", "type": "token", "documentation": "submissionset"},
                            {"name": "status", "type": "token", "documentation": "current"},
                            {"name": "identifier", "type": "token", "documentation": "the uniqueId"},
                        ],
                    },
                    {
                        "type": "Task",
                        "documentation": "A gather job, its status and per-custodian progress (its requester only).",
                        "interaction": [{"code": "read"}],
                    },
                    {
                        "type": "Subscription",
                        "documentation": (
                            "rest-hook webhooks for events about the member's patients; criteria DocumentReference, "
                            "Patient or Encounter; deliveries signed with HMAC-SHA256 (X-HIE-Signature)."
                        ),
                        "interaction": [
                            {"code": "create"},
                            {"code": "read"},
                            {"code": "search-type"},
                            {"code": "delete"},
                        ],
                    },
                    {
                        "type": "Binary",
                        "documentation": "MHD ITI-68: a document's content, served or fetched from its custodian.",
                        "interaction": [{"code": "read"}],
                    },
                ],
                "interaction": [
                    {
                        "code": "transaction",
                        "documentation": (
                            "MHD ITI-65 Provide Document Bundle: DocumentReference subject as the member's "
                            "identifier, Patient/{id} or a Patient URL of this node; an optional SubmissionSet List"
                        ),
                    }
                ],
            }
        ],
    }
    return CapabilityStatement.model_validate(statement)


@require_GET
@fhir_view(scope=None)
def metadata(request: HttpRequest) -> HttpResponse:
    return fhir_response(capability_statement(request.build_absolute_uri("/fhir")))


def smart_configuration(token_url: str, revoke_url: str) -> dict:
    """SMART App Launch 2.0 §Conformance, for backend services (no authorization endpoint: only the
    client credentials grant is offered)."""
    return {
        "token_endpoint": token_url,
        "revocation_endpoint": revoke_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "scopes_supported": supported_scopes(),
        "capabilities": [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "permission-v1",
            "permission-v2",
        ],
    }


@require_GET
def well_known_smart_configuration(request: HttpRequest) -> HttpResponse:
    """GET [base]/.well-known/smart-configuration: public, like the CapabilityStatement."""
    document = smart_configuration(request.build_absolute_uri("/oauth/token"),
                                   request.build_absolute_uri("/oauth/revoke_token"))  # fmt: skip
    return JsonResponse(document, headers={"Cache-Control": "public, max-age=3600"})
