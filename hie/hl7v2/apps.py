from django.apps import AppConfig


class Hl7v2Config(AppConfig):
    name = "hie.hl7v2"
    label = "hl7v2"
    verbose_name = "HL7 v2 intake"
