from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView
from oauth2_provider import views as oauth2_views

from hie import health
from hie.fhir import capability, consents, documents, patients, subscriptions
from hie.fhir import views as fhir_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:home", permanent=False)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("django_prometheus.urls")),  # /metrics
    path("oauth/token", oauth2_views.TokenView.as_view(), name="token"),
    path("oauth/revoke_token", oauth2_views.RevokeTokenView.as_view(), name="revoke-token"),
    path("fhir", documents.fhir_system, name="fhir-system"),
    path("fhir/metadata", capability.metadata, name="fhir-metadata"),
    # SMART App Launch 2.0: the configuration lives under the FHIR base; the host root serves it too.
    path("fhir/.well-known/smart-configuration", capability.well_known_smart_configuration, name="smart-configuration"),
    path(".well-known/smart-configuration", capability.well_known_smart_configuration),
    path("fhir/DocumentReference", documents.document_reference_type, name="fhir-document-reference"),
    path("fhir/DocumentReference/_search", documents.document_reference_search, name="fhir-document-search"),
    path("fhir/DocumentReference/<str:entry_id>", documents.document_reference_instance, name="fhir-document-read"),
    path("fhir/Binary/<str:entry_id>", documents.document_content, name="fhir-binary"),
    path("fhir/List", documents.list_type, name="fhir-list"),
    path("fhir/List/<str:list_id>", documents.list_instance, name="fhir-list-read"),
    path("fhir/Patient", patients.patient_type, name="fhir-patient"),
    path("fhir/Patient/$ihe-pix", patients.pix_query, name="fhir-pix"),
    path("fhir/Patient/$match", patients.patient_match, name="fhir-match"),
    path("fhir/Patient/$gather-documents", documents.gather_documents, name="fhir-gather"),
    path("fhir/Task/<str:task_id>", documents.task_instance, name="fhir-task"),
    path("fhir/Subscription", subscriptions.subscription_type, name="fhir-subscription"),
    path(
        "fhir/Subscription/<str:subscription_id>",
        subscriptions.subscription_instance,
        name="fhir-subscription-instance",
    ),
    path("fhir/Patient/<str:resource_id>/$break-glass", consents.break_glass, name="fhir-break-glass"),
    path("fhir/Patient/<str:resource_id>", patients.patient_instance, name="fhir-patient-instance"),
    path("fhir/Consent", consents.consent_type, name="fhir-consent"),
    path("fhir/Consent/<str:consent_id>", consents.consent_instance, name="fhir-consent-instance"),
    path("fhir/Consent/<str:consent_id>/_history/<str:version>", consents.consent_version, name="fhir-consent-vread"),
    path("fhir/Consent/<str:consent_id>/form", consents.consent_form, name="fhir-consent-form"),
    path("fhir/Organization", fhir_views.organization_search, name="fhir-organization-search"),
    path("fhir/Organization/<str:organization_id>", fhir_views.organization_read, name="fhir-organization-read"),
    path("console/", include("hie.console.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
]
