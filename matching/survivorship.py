"""The golden record of a person, derived from its linked records.

Survivorship rules: single-valued fields (name, sex, birth date, address) take the most
recently updated non-empty value from the most trusted source (registrations from members'
live systems, FHIR and HL7, before bulk CSV loads); names, identifiers, phones and emails are
kept as lists of every distinct value. The SSN never enters the golden record.
"""

from matching.models import Source

SOURCE_TRUST = {Source.FHIR: 2, Source.HL7: 2, Source.CSV: 1}


def _ranked(records: list) -> list:
    # The identifier breaks ties (records loaded together share updated_at), so the golden record
    # does not depend on the order rows come back in.
    return sorted(
        records,
        key=lambda r: (SOURCE_TRUST.get(r.source, 0), r.updated_at, r.identifier_system, r.local_id),
        reverse=True,
    )


def build_golden_record(records: list) -> dict:
    """`records` are PatientRecords, or any objects with their attributes (rows read in bulk)."""
    active = [r for r in records if r.active]
    if not active:
        return {}
    ranked = _ranked(active) if len(active) > 1 else active
    names = []
    sex = birth_date = address_record = None
    for r in ranked:
        name = {"given": r.given_name, "middle": r.middle_name, "family": r.family_name, "suffix": r.suffix}
        if (r.given_name or r.family_name) and name not in names:
            names.append(name)
        for previous in r.previous_family_names:
            old = {**name, "family": previous, "use": "old"}
            if old not in names:
                names.append(old)
        # Each single value from the first ranked record that has it.
        if sex is None and r.sex and r.sex != "unknown":
            sex = r.sex
        if birth_date is None and r.birth_date:
            birth_date = r.birth_date
        if address_record is None and (r.address_line or r.city or r.postal_code):
            address_record = r
    identifiers = [{"organization": r.organization_id, "system": r.identifier_system, "value": r.local_id}
                   for r in ranked]  # fmt: skip
    if len(identifiers) > 1:
        identifiers.sort(key=lambda i: (i["system"], i["value"]))
    return {
        "names": names,
        "sex": sex or "unknown",
        "birth_date": birth_date.isoformat() if birth_date else None,
        "phones": sorted({p for r in ranked for p in r.norm.get("phones", [])}),
        "emails": sorted({r.norm["email"] for r in ranked if r.norm.get("email")}),
        "address": {
            "line": address_record.address_line,
            "city": address_record.city,
            "state": address_record.state,
            "postal_code": address_record.postal_code,
        }
        if address_record
        else None,
        "identifiers": identifiers,
    }
