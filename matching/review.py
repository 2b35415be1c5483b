"""Reading review tasks for the people who decide them: the queue, and each task's comparison.

The comparison is the scorer's own explanation (matching/score.py), recomputed against the
candidate's records as they are now, so reviewers see the same weights matching would use.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, QuerySet

from matching.models import PatientRecord, Person, ReviewCandidate, ReviewStatus, ReviewTask
from matching.selectors import Candidate, records_of_person, score_against_candidates

# The fields reviewers compare, in the order of the review page, with the record attributes they show.
COMPARED_FIELDS = (
    ("given", "Given name"),
    ("middle", "Middle name"),
    ("family", "Family name"),
    ("suffix", "Suffix"),
    ("birth_date", "Birth date"),
    ("sex", "Sex"),
    ("ssn", "SSN"),
    ("phone", "Phone"),
    ("email", "Email"),
    ("address", "Address"),
)


def shown_value(record: PatientRecord, field_name: str) -> str:
    """A record's value of a compared field as reviewers see it (the SSN masked)."""
    if field_name == "family":
        previous = ", ".join(record.previous_family_names)
        return record.family_name + (f" (formerly {previous})" if previous else "")
    if field_name == "address":
        return ", ".join(v for v in (record.address_line, record.city, record.state, record.postal_code) if v)
    if field_name == "birth_date":
        return record.birth_date.isoformat() if record.birth_date else ""
    if field_name == "ssn":
        return record.masked_ssn
    if field_name == "phone":
        return ", ".join(record.phones)
    attribute = {"given": "given_name", "middle": "middle_name"}.get(field_name, field_name)
    return str(getattr(record, attribute, "") or "")


@dataclass
class FieldComparison:
    field: str
    label: str
    record_value: str
    candidate_value: str
    level: str  # the comparison level (exact, similar, different...) or "missing"
    weight: float

    @property
    def verdict(self) -> str:
        """agree, disagree or neutral: how the page colours the row."""
        if self.level == "missing" or self.weight == 0:
            return "neutral"
        return "agree" if self.weight > 0 else "disagree"


@dataclass
class CandidateComparison:
    person: Person
    score: float  # the probability when the task was opened
    current_score: float | None  # the probability against the candidate's records now
    compared_record: PatientRecord | None
    fields: list[FieldComparison]
    rules: list[str]
    other_records: list[PatientRecord] = field(default_factory=list)


def open_reviews(
    *, organization_id: int | None = None, min_score: float | None = None, max_score: float | None = None,
    order: str = "score",
) -> QuerySet[ReviewTask]:  # fmt: skip
    """Open review tasks, highest score first (or oldest first with order='age')."""
    tasks = ReviewTask.objects.filter(status=ReviewStatus.OPEN).select_related("record__organization")
    if organization_id:
        tasks = tasks.filter(record__organization_id=organization_id)
    if min_score is not None:
        tasks = tasks.filter(top_score__gte=min_score)
    if max_score is not None:
        tasks = tasks.filter(top_score__lt=max_score)
    tasks = tasks.annotate(candidate_count=Count("candidates"))
    return tasks.order_by("created_at", "pk") if order == "age" else tasks.order_by("-top_score", "pk")


def next_open_review(*, after_skipping: set[int], order: str = "score") -> ReviewTask | None:
    return open_reviews(order=order).exclude(pk__in=after_skipping).first()


def oldest_open_review_at() -> datetime | None:
    task = ReviewTask.objects.filter(status=ReviewStatus.OPEN).order_by("created_at").first()
    return task.created_at if task else None


def compare_review(task: ReviewTask) -> list[CandidateComparison]:
    """Each candidate of the task beside the task's record, field by field, best candidate first."""
    record = task.record
    comparisons = []
    for candidate in ReviewCandidate.objects.filter(task=task).select_related("person").order_by("-score"):
        person_records = [r for r in records_of_person(candidate.person_id) if r.pk != record.pk]
        scored = score_against_candidates(
            record.norm, [Candidate(r.pk, r.norm, candidate.person_id) for r in person_records], set()
        )
        best = scored[0] if scored else None
        explanation = best.explanation if best else candidate.explanation
        compared = next((r for r in person_records if best and r.pk == best.record_id), None)
        levels = {f["field"]: f for f in explanation.get("fields", [])}
        fields = [
            FieldComparison(
                field=name,
                label=label,
                record_value=shown_value(record, name),
                candidate_value=shown_value(compared, name) if compared else "",
                level=levels.get(name, {}).get("level", "missing"),
                weight=levels.get(name, {}).get("weight", 0.0),
            )
            for name, label in COMPARED_FIELDS
        ]
        comparisons.append(
            CandidateComparison(
                person=candidate.person,
                score=candidate.score,
                current_score=best.probability if best else None,
                compared_record=compared,
                fields=fields,
                rules=explanation.get("rules", []),
                other_records=[r for r in person_records if r is not compared],
            )
        )
    return comparisons
