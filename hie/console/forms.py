"""The console's forms: input checked here, rules checked by the services the views call."""

from django import forms

from consent.models import ConsentSource, PolicyRule
from consent.provisions import CONSENT_PURPOSES, KNOWN_LABELS
from hie.orgs.models import Organization

PURPOSE_CHOICES = [(code, code) for code in sorted(CONSENT_PURPOSES)]
LABEL_CHOICES = [(code, code) for code in sorted(KNOWN_LABELS)]
TYPE_CHOICES = [("permit", "permit"), ("deny", "deny")]


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, strip=True, error_messages={"required": "Give a reason."})


class PersonSearchForm(forms.Form):
    q = forms.CharField(max_length=120, strip=True, label="EUID, identifier, or family name [given name] [birth date]")


def _organizations() -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=Organization.objects.filter(active=True).order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: any organization.",
    )


class ConsentForm(forms.Form):
    """A consent as the clerk records it: one root provision and at most one exception."""

    policy_rule = forms.ChoiceField(choices=PolicyRule.choices)
    source = forms.ChoiceField(choices=ConsentSource.choices)
    scanned_form = forms.FileField(required=False, help_text="PDF or image of the signed form.")
    collected_by = forms.ModelChoiceField(queryset=Organization.objects.filter(active=True).order_by("name"),
                                          required=False)  # fmt: skip
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    type = forms.ChoiceField(choices=TYPE_CHOICES, label="The patient's choice")
    actors = _organizations()
    purposes = forms.MultipleChoiceField(choices=PURPOSE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
                                         help_text="None ticked: any purpose.")  # fmt: skip
    labels = forms.MultipleChoiceField(choices=LABEL_CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
                                       help_text="None ticked: data in general.")  # fmt: skip
    exception_type = forms.ChoiceField(choices=[("", "no exception"), *TYPE_CHOICES], required=False,
                                       label="Exception")  # fmt: skip
    exception_actors = _organizations()
    exception_purposes = forms.MultipleChoiceField(choices=PURPOSE_CHOICES, required=False,
                                                   widget=forms.CheckboxSelectMultiple)  # fmt: skip
    exception_labels = forms.MultipleChoiceField(choices=LABEL_CHOICES, required=False,
                                                 widget=forms.CheckboxSelectMultiple)  # fmt: skip

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("source") == ConsentSource.FORM and not cleaned.get("scanned_form"):
            self.add_error("scanned_form", "A signed form is recorded with its scan.")
        if cleaned.get("start") and cleaned.get("end") and cleaned["start"] > cleaned["end"]:
            self.add_error("end", "The consent ends before it starts.")
        if cleaned.get("exception_type") and cleaned.get("exception_type") == cleaned.get("type"):
            self.add_error("exception_type", "An exception goes the other way (deny within a permit, or the reverse).")
        return cleaned

    def provision(self) -> dict:
        """The root provision in the registry's shape (consent/provisions.py)."""
        data = self.cleaned_data
        period = {
            "start": f"{data['start'].isoformat()}T00:00:00+00:00" if data.get("start") else None,
            "end": f"{data['end'].isoformat()}T23:59:59+00:00" if data.get("end") else None,
        }
        root = {
            "type": data["type"],
            "period": period if period["start"] or period["end"] else None,
            "actors": [o.pk for o in data["actors"]],
            "purposes": data["purposes"],
            "labels": data["labels"],
            "provisions": [],
        }
        if data.get("exception_type"):
            root["provisions"].append({
                "type": data["exception_type"],
                "actors": [o.pk for o in data["exception_actors"]],
                "purposes": data["exception_purposes"],
                "labels": data["exception_labels"],
            })  # fmt: skip
        return root


class ApiClientForm(forms.Form):
    label = forms.CharField(max_length=100, required=False)
    scopes = forms.MultipleChoiceField(choices=[], widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args: object, scopes: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scopes"].choices = [(s, s) for s in scopes]
        self.fields["scopes"].initial = scopes


class AuditSearchForm(forms.Form):
    event_type = forms.CharField(max_length=80, required=False)
    organization = forms.ModelChoiceField(queryset=Organization.objects.order_by("name"), required=False)
    person_euid = forms.CharField(max_length=64, required=False, label="EUID")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
