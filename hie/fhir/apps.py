from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "hie.fhir"
    label = "fhir"
    verbose_name = "FHIR API"
