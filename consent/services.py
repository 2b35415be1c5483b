"""Changes to the consent registry: recording, changing and withdrawing consents, break-the-glass."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consent import provisions
from consent.access import check_may_record
from consent.models import BreakGlass, Consent, ConsentSource, ConsentStatus, ConsentVersion, PolicyRule
from consent.selectors import euid_of_identifier
from hie.audit.models import Action, Outcome
from hie.audit.services import Actor, record_event
from hie.exceptions import UnknownResource, ValidationFailed
from hie.orgs.models import Organization
from matching.models import PatientRecord, Person


def _known_identifier(system: str, value: str) -> None:
    from hie.fhir.patient import euid_system

    known = (
        Person.objects.filter(euid=value).exists()
        if system == euid_system()
        else PatientRecord.objects.filter(identifier_system=system, local_id=value).exists()
    )
    if not known:
        raise UnknownResource("no patient is registered under that identifier")


def _snapshot(consent: Consent, actor: Actor, reason: str, purpose: str) -> None:
    ConsentVersion.objects.create(
        consent=consent, version=consent.version, status=consent.status, provision=consent.provision,
        changed_by_id=actor.staff_user_id, changed_by_organization_id=actor.organization_id, reason=reason,
    )  # fmt: skip
    # Named by the patient's EUID, so every recording, change and withdrawal is in the patient's
    # accounting of disclosures, whoever made it.
    record_event(actor=actor, action=Action.CREATE if consent.version == 1 else Action.UPDATE,
                 event_type="consent-change", resource_type="Consent", resource_id=str(consent.pk),
                 person_euid=euid_of_identifier(consent.patient_system, consent.patient_value),
                 purpose_of_use=purpose, detail={"version": consent.version, "status": consent.status})  # fmt: skip


def audit_consent_read(*, actor: Actor, event_type: str, consent: Consent | None, person_euid: str = "",
                       purpose: str, detail: dict | None = None) -> None:  # fmt: skip
    """A read or search of the consent registry, against the patient's EUID (the consent's, or the
    searched person's)."""
    if consent is not None:
        person_euid = euid_of_identifier(consent.patient_system, consent.patient_value)
    record_event(actor=actor, action=Action.READ, event_type=event_type, resource_type="Consent",
                 resource_id=str(consent.pk) if consent is not None else "", person_euid=person_euid,
                 purpose_of_use=purpose, detail=detail or {})  # fmt: skip


def record_consent(
    *,
    patient_system: str,
    patient_value: str,
    policy_rule: str,
    provision: dict,
    source: str,
    actor: Actor,
    date_recorded: datetime | None = None,
    status: str = ConsentStatus.ACTIVE,
    collected_by: Organization | None = None,
    attachment: object = None,
    member: Organization | None = None,
    named_collectors: tuple[int, ...] = (),
    purpose: str = "",
) -> Consent:
    """Record a patient's consent under one of their identifiers (a member's, or the EUID).

    `member` is the member recording it through the API: it must have registered the patient and
    collected the consent itself (`named_collectors`, the organizations the resource names), and it
    becomes the consent's owner (consent/access.py). Without a member, HIE staff or the node record it.
    """
    if policy_rule not in PolicyRule.values:
        raise ValidationFailed("the policy rule must be OPTIN, OPTOUT, OPTINR or OPTOUTE")
    if source not in ConsentSource.values:
        raise ValidationFailed("the source must be form, verbal or portal")
    if status not in (ConsentStatus.DRAFT, ConsentStatus.ACTIVE):
        raise ValidationFailed("a new consent is draft or active")
    cleaned = provisions.clean(provision)
    if member is not None:
        # Checked outside the transaction below, so that the audit of a refusal is kept.
        check_may_record(member=member, patient_system=patient_system, patient_value=patient_value,
                         collectors=list(named_collectors), actor=actor, purpose=purpose)  # fmt: skip
        collected_by = member
    else:
        _known_identifier(patient_system, patient_value)
    with transaction.atomic():
        consent = Consent.objects.create(
            patient_system=patient_system, patient_value=patient_value, policy_rule=policy_rule,
            provision=cleaned, source=source, status=status,
            date_recorded=date_recorded or timezone.now(), collected_by=collected_by,
            recorded_by_id=actor.staff_user_id, recorded_by_organization=member, attachment=attachment or "",
        )  # fmt: skip
        _snapshot(consent, actor, "recorded", purpose)
    return consent


@transaction.atomic
def change_consent(*, consent: Consent, actor: Actor, reason: str, provision: dict | None = None,
                   status: str | None = None, purpose: str = "") -> Consent:  # fmt: skip
    """A new version of the consent; withdrawal is a change of status, never a deletion."""
    consent = Consent.objects.select_for_update().get(pk=consent.pk)
    if consent.status in (ConsentStatus.INACTIVE, ConsentStatus.ENTERED_IN_ERROR):
        raise ValidationFailed("a withdrawn or erroneous consent is not changed; record a new one")
    if status is not None:
        if status not in ConsentStatus.values:
            raise ValidationFailed("unknown consent status")
        consent.status = status
    if provision is not None:
        consent.provision = provisions.clean(provision)
    consent.version += 1
    consent.save()
    _snapshot(consent, actor, reason, purpose)
    return consent


def withdraw_consent(*, consent: Consent, actor: Actor, reason: str, purpose: str = "") -> Consent:
    return change_consent(consent=consent, actor=actor, reason=reason or "withdrawn", status=ConsentStatus.INACTIVE,
                          purpose=purpose)  # fmt: skip


@transaction.atomic
def open_break_glass(*, person: Person, requester: Organization, purpose: str, reason: str, minutes: int,
                     actor: Actor) -> BreakGlass:  # fmt: skip
    """Emergency access to one person for a limited time; audited and queued for the privacy officer."""
    if purpose not in ("BTG", "ETREAT"):
        raise ValidationFailed("break-the-glass is for purpose BTG or ETREAT")
    if not reason.strip():
        raise ValidationFailed("break-the-glass needs a reason")
    if not 0 < minutes <= settings.BREAK_GLASS_MAX_MINUTES:
        raise ValidationFailed(f"break-the-glass lasts 1 to {settings.BREAK_GLASS_MAX_MINUTES} minutes")
    grant = BreakGlass.objects.create(person=person, requester=requester, purpose=purpose, reason=reason[:500],
                                      expires_at=timezone.now() + timedelta(minutes=minutes))  # fmt: skip
    detail = {"grant": grant.pk, "minutes": minutes}
    record_event(actor=actor, action=Action.EXECUTE, event_type="break-glass-open", resource_type="Consent",
                 person_euid=person.euid, purpose_of_use=purpose, detail=detail)  # fmt: skip
    return grant


@transaction.atomic
def review_break_glass(*, grant: BreakGlass, actor: Actor, note: str) -> BreakGlass:
    if grant.reviewed_at is not None:
        raise ValidationFailed("this access was reviewed already")
    grant.reviewed_at, grant.reviewed_by_id, grant.review_note = timezone.now(), actor.staff_user_id, note[:500]
    grant.save(update_fields=["reviewed_at", "reviewed_by", "review_note"])
    record_event(actor=actor, action=Action.UPDATE, event_type="break-glass-review", resource_type="Consent",
                 person_euid=grant.person.euid, detail={"grant": grant.pk})  # fmt: skip
    return grant


def audit_decisions(*, actor: Actor, person: Person | None, decisions: list[tuple[dict, object]], purpose: str) -> None:
    """Several decisions of one request (one per custodian and label set of a document search) as one
    AuthZ-Consent audit event listing each: `decisions` pairs what was decided on with the Decision."""
    record_event(
        actor=actor,
        action=Action.EXECUTE,
        event_type="authz-consent",
        resource_type="Consent",
        person_euid=person.euid if person is not None else "",
        purpose_of_use=purpose,
        outcome=Outcome.SUCCESS if all(d.permitted for _, d in decisions) else Outcome.MINOR_FAILURE,
        detail={
            "decisions": [
                {**about, "outcome": d.outcome, "consents": list(d.consents), "policy": d.policy,
                 "break_glass": d.break_glass, "withheld": sorted(d.redact)}
                for about, d in decisions
            ]
        },
    )  # fmt: skip


def audit_decision(*, actor: Actor, person: Person, decision: object, purpose: str) -> None:
    """A consent decision as an audit event (FHIR AuditEvent subtype AuthZ-Consent)."""
    record_event(
        actor=actor,
        action=Action.EXECUTE,
        event_type="authz-consent",
        resource_type="Consent",
        person_euid=person.euid,
        purpose_of_use=purpose,
        outcome=Outcome.SUCCESS if decision.permitted else Outcome.MINOR_FAILURE,
        detail={
            "outcome": decision.outcome,
            "consents": list(decision.consents),
            "policy": decision.policy,
            "break_glass": decision.break_glass,
            "withheld": sorted(decision.redact),
        },
    )
