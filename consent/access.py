"""What a member may do with consents through the FHIR API: the one place these rules live.

- A member records a consent only for a patient it registered itself (an identifier of one of its
  own systems, under which it holds a record), as the organization that collected it.
- A member reads, finds, changes and withdraws only the consents it recorded; any other consent
  answers exactly as an id or patient that does not exist, and the attempt is audited against the
  patient's EUID.
- A member's consent may deny anything (a deny only narrows what is shared), but its permits
  release only the data that member holds: no member opens another's data by a consent.

HIE staff record, change and withdraw any consent in the console; those consents speak for the
whole exchange. docs/consent.md and docs/threat-model.md say the same for readers.
"""

from django.db.models import QuerySet

from consent.models import Consent
from consent.selectors import euid_of_identifier
from hie.audit.models import Action, Outcome
from hie.audit.services import Actor, record_event
from hie.exceptions import Forbidden, UnknownResource
from hie.orgs.models import Organization
from matching.models import PatientRecord

# One answer for an unknown identifier, another member's identifier and an EUID: no existence oracle.
NOT_A_PATIENT_OF_THE_MEMBER = "no patient this member registered has that identifier"


def check_may_record(
    *, member: Organization, patient_system: str, patient_value: str, collectors: list[int], actor: Actor,
    purpose: str = "",
) -> None:  # fmt: skip
    """Raise unless `member` may record a consent for this patient, collected by `collectors` (the
    organizations the resource names as collecting it; none means the member itself).

    A collector other than the member is Forbidden whatever the patient: naming one does not depend
    on, and so does not reveal, who is registered. A patient the member did not register answers as
    an unknown one. Either refusal is audited against the patient's EUID when there is one.
    """
    registered = (
        patient_system in member.identifier_system_uris
        and PatientRecord.objects.filter(
            organization=member, identifier_system=patient_system, local_id=patient_value
        ).exists()
    )
    foreign_collector = any(pk != member.pk for pk in collectors)
    if registered and not foreign_collector:
        return
    audit_consent_refusal(actor=actor, action=Action.CREATE, consent_id="", purpose=purpose,
                          person_euid=euid_of_identifier(patient_system, patient_value))  # fmt: skip
    check_collected_by(member, collectors)
    raise UnknownResource(NOT_A_PATIENT_OF_THE_MEMBER)


def check_collected_by(member: Organization, collectors: list[int] | tuple[int, ...]) -> None:
    """A member records and changes only consents it collected: naming another organization as the
    collector (Consent.organization) would make the consent that organization's word."""
    if any(pk != member.pk for pk in collectors):
        raise Forbidden("a member records only the consents it collected: Consent.organization must be the member")


def audit_consent_refusal(*, actor: Actor, action: Action, consent_id: str, person_euid: str, purpose: str) -> None:
    """A member's refused attempt on a consent (recording for a patient not its own, reading or changing
    another member's consent), against the patient's EUID: the patient's accounting of disclosures
    shows who tried. The member itself is told no more than the refusal it gets."""
    record_event(actor=actor, action=action, event_type="consent-refused", resource_type="Consent",
                 resource_id=consent_id, person_euid=person_euid, purpose_of_use=purpose,
                 outcome=Outcome.MINOR_FAILURE)  # fmt: skip


def consent_for(*, member: Organization, consent_id: str, actor: Actor, action: Action, purpose: str = "") -> Consent:
    """The consent with this id, if `member` recorded it.

    Another member's consent answers exactly as an unknown id (existence is protected: ids are
    sequential); the attempt, a read or a change, is audited against the patient's EUID so that it
    appears in that patient's accounting of disclosures.
    """
    consent = Consent.objects.filter(pk=int(consent_id)).first() if _an_id(consent_id) else None
    if consent is not None and consent.recorded_by_organization_id != member.pk:
        euid = euid_of_identifier(consent.patient_system, consent.patient_value)
        audit_consent_refusal(actor=actor, action=action, consent_id=str(consent.pk), person_euid=euid,
                              purpose=purpose)  # fmt: skip
        consent = None
    if consent is None:
        raise UnknownResource(f"Consent/{consent_id} is not known")
    return consent


def _an_id(text: str) -> bool:
    return text.isdecimal() and len(text) <= 18  # a longer number is no row's id, and overflows the column


def visible_to(member: Organization, consents: QuerySet[Consent]) -> QuerySet[Consent]:
    """The consents of `consents` a member may read or find: those it recorded."""
    return consents.filter(recorded_by_organization=member)


def permit_reaches(consent: Consent, custodian_id: int | None) -> bool:
    """Whether the consent's permits release data held by `custodian_id`.

    A consent HIE staff recorded speaks for every custodian. A member's consent permits only for
    the data that member holds: not for another member's documents, nor for the person's identity
    (custodian None), which joins every member's records. Where its permit does not reach, the
    consent says nothing and the custodian's implicit policy decides, so a member's consent can
    never release more of another member's data than that member shares without any consent.
    """
    return consent.recorded_by_organization_id is None or consent.recorded_by_organization_id == custodian_id
