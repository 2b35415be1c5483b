"""Matching many new records at once: the bulk path of imports and batch deduplication.

It decides exactly as match_record would if the records arrived one after the other in id
order (same candidates, same scorer, same decide()), but fetches candidates for the whole
batch in a few queries and scores every pair in one vectorised pass.
"""

import logging
from collections import defaultdict, namedtuple
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hie.bulk import allocate_ids, among, bigint_rows, indexes_built_after, insert_rows, without_cycle_collection
from matching.arrays import distinct, members
from matching.blocking import block_pairs
from matching.compare import RecordTable
from matching.locks import lock_blocking_keys
from matching.models import (
    BlockingKey,
    ChangeKind,
    Link,
    LinkChange,
    LinkEvent,
    LinkSource,
    LinkState,
    PatientRecord,
    Person,
    PersonStatus,
    ReviewCandidate,
    ReviewStatus,
    ReviewTask,
    new_euids,
)
from matching.score import rank_persons, review_threshold
from matching.selectors import CONFIRMED, CURRENT_STATES, active_scorer, current_person_subquery, norms_of
from matching.services import (
    GOLDEN_FIELDS,
    REVIEW_CANDIDATES,
    decide,
    match_record,
    matched,
    refresh_golden_records,
)
from matching.survivorship import build_golden_record

logger = logging.getLogger(__name__)
CHUNK = 5000


@dataclass
class BatchOutcome:
    records: int = 0
    linked: int = 0
    review: int = 0
    new_person: int = 0
    candidate_pairs: int = 0
    oversized_passes: dict = field(default_factory=dict)


# A batch record as it is read: its id, normalised forms and the fields of its golden record.
BatchRecord = namedtuple("BatchRecord", ("pk", "norm", *(name for name in GOLDEN_FIELDS if name != "norm")))

LINK_COLUMNS = ("record_id", "person_id", "state", "source", "score", "contributions", "model_version", "updated_at")
EVENT_COLUMNS = ("change_id", "record_id", "person_after_id", "state_before", "state_after", "source_before",
                 "source_after", "score_after", "contributions_before", "created_at")  # fmt: skip


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _keys_of(record_ids: list[int]) -> np.ndarray:
    """(key, record) rows of the blocking keys of some records (ids ascending).

    Ids with few gaps between them (those of a bulk load) are read as one range of the primary
    key, and the keys of records in the gaps dropped here: looking each id up took the server
    about three times as long.
    """
    keys = BlockingKey.objects.values_list("key", "record_id")
    if record_ids[-1] - record_ids[0] >= 2 * len(record_ids):
        return bigint_rows(keys.filter(record_id__in=among(record_ids)))
    rows = bigint_rows(keys.filter(record_id__gte=record_ids[0], record_id__lte=record_ids[-1]))
    return rows[members(rows[:, 1], np.array(record_ids, dtype=np.int64))]


@without_cycle_collection()
@transaction.atomic
def match_batch(record_ids: list[int]) -> BatchOutcome:
    outcome = BatchOutcome()
    linked_already = set()
    for part in _chunks(sorted(record_ids)):
        linked_already.update(
            Link.objects.filter(record_id__in=among(part), state__in=CURRENT_STATES).values_list("record_id", flat=True)
        )
    batch: list[BatchRecord] = []
    for part in _chunks(sorted(set(record_ids) - linked_already)):
        pending = PatientRecord.objects.select_for_update(of=("self",)).filter(
            pk__in=among(part), active=True, pending__isnull=False
        )
        # Records are decided in id order.
        batch += map(BatchRecord._make, norms_of(pending.order_by("pk"), *BatchRecord._fields[2:]))
    # Records matched before (a re-registration) keep their history: the single path re-evaluates them.
    for record_id in sorted(linked_already):
        match_record(record_id)
    if not batch:
        return outcome
    batch_ids = [record.pk for record in batch]
    # (key, record) rows: the batch's keys, then those of records already linked to a person that
    # share them. Other pending records are matched by their own task; batch records have no
    # current link yet, so the join leaves them out.
    block_rows = [_keys_of(part) for part in _chunks(batch_ids, 20_000)]
    keys = distinct(np.concatenate(block_rows)[:, 0])
    lock_blocking_keys(keys)
    if Link.objects.filter(state__in=CONFIRMED).exists():
        keys = keys.tolist()
        block_rows += [
            bigint_rows(
                BlockingKey.objects.filter(key__in=among(part), record__links__state__in=CONFIRMED).values_list(
                    "key", "record_id"
                )
            )
            for part in _chunks(keys)
        ]
    block_rows = np.concatenate(block_rows)
    # Who is already someone: linked records outside the batch that share a block with it
    # (blocks over the cap are skipped below).
    codes, block_keys = pd.factorize(block_rows[:, 0])
    entry_ids = block_rows[:, 1]
    small = np.bincount(codes)[codes] <= settings.MATCH_BLOCK_CAP
    known = {}
    for part in _chunks(np.setdiff1d(entry_ids[small], batch_ids).tolist()):
        linked = PatientRecord.objects.filter(pk__in=among(part), active=True).annotate(
            person_id=current_person_subquery(CONFIRMED)
        )
        for pk, norm, person in norms_of(linked, "person_id"):
            if person is not None:
                known[pk] = (norm, person)

    # One table of the batch and the known records, in id order (the order the single path
    # ranks candidates in, so equal scores are settled the same way).
    norm_of = {record.pk: record.norm for record in batch}
    norm_of.update((pk, norm) for pk, (norm, _) in known.items())
    table_ids = np.array(sorted(norm_of), dtype=np.int64)
    table = RecordTable([norm_of[pk] for pk in table_ids.tolist()])
    in_batch = np.isin(table_ids, batch_ids)
    # The decider of each pair is its later record: linked records (rank -1) come before the batch.
    ranks = np.where(in_batch, np.arange(len(table_ids)), -1)
    position = np.searchsorted(table_ids, entry_ids)
    filed = (position < len(table_ids)) & (table_ids[np.minimum(position, len(table_ids) - 1)] == entry_ids)
    # Blocks are counted with every record filed under them, as find_candidates counts them.
    entries = np.where(filed, position, -1)
    cap = settings.MATCH_BLOCK_CAP
    left, right, oversized = block_pairs(codes, block_keys, entries, ranks, in_batch, cap)
    outcome.oversized_passes = oversized
    scorer = active_scorer()
    scored = scorer.score(table, left, right)
    outcome.candidate_pairs = len(left)
    outcome.records = len(batch_ids)

    refused = defaultdict(set)
    for part in _chunks(batch_ids):
        for record_id, person_id in Link.objects.filter(
            record_id__in=among(part), state=LinkState.NO_MATCH, source=LinkSource.MANUAL
        ).values_list("record_id", "person_id"):
            refused[record_id].add(("db", person_id))

    # Pairs come grouped by the record that decides them (left), in table order.
    batch_positions = np.flatnonzero(in_batch)
    starts = np.searchsorted(left, batch_positions, side="left")
    ends = np.searchsorted(left, batch_positions, side="right")
    # A record none of whose pairs reaches review is a new person whoever its candidates are
    # (ranking only lowers or drops candidates): most records, and no ranking needed for them.
    top = np.full(len(batch_ids), -1.0)
    some = starts < ends
    if some.any():
        top[some] = np.maximum.reduceat(scored.probability, starts[some])
    rank_them = (top >= review_threshold()).tolist()
    # The pairs that can decide a link: those reaching review, and those that bar one of their
    # persons (conflicts). When they link the record, the others could not have changed the
    # outcome; otherwise all its pairs are ranked, for the review's list of candidates. (A
    # person none of whose pairs reaches review ranks below every person one of whose pairs
    # does, however its conflicts cap them: only those persons' conflicts are looked at.)
    reaching = scored.probability >= review_threshold()
    reviewable, barring = np.flatnonzero(reaching), np.flatnonzero(scored.conflict_mask & ~reaching)
    reviewable_ranges = [np.searchsorted(reviewable, bound).tolist() for bound in (starts, ends)]
    barring_ranges = [np.searchsorted(barring, bound).tolist() for bound in (starts, ends)]
    reviewable, barring = reviewable.tolist(), barring.tolist()
    starts, ends, other_ids = starts.tolist(), ends.tolist(), table_ids[right].tolist()
    person_of: dict[int, tuple] = {pk: ("db", person) for pk, (_, person) in known.items()}

    def ranking(pairs: Iterable[int], refusals: set | tuple) -> list:
        """The candidate persons of some of a record's pairs, ranked."""
        candidates = ((person_of.get(other_ids[i]), i) for i in pairs)
        return rank_persons(((token, i) for token, i in candidates
                             if token is not None and token not in refusals), scored)  # fmt: skip

    decisions = []  # (record_id, person token, state, pair index or None, ranked candidates)
    new_persons = 0
    for n, record_id in enumerate(batch_ids):
        ranked = []
        if rank_them[n]:
            refusals = refused.get(record_id, ())
            reaching_pairs = reviewable[reviewable_ranges[0][n] : reviewable_ranges[1][n]]
            contenders = {person_of.get(other_ids[i]) for i in reaching_pairs}
            bars = [i for i in barring[barring_ranges[0][n] : barring_ranges[1][n]]
                    if person_of.get(other_ids[i]) in contenders]  # fmt: skip
            ranked = ranking(sorted(reaching_pairs + bars) if bars else reaching_pairs, refusals)
            if decide(ranked[0][2] if ranked else None) != "linked":
                ranked = ranking(range(starts[n], ends[n]), refusals)
        decision = decide(ranked[0][2] if ranked else None)
        if decision == "new_person":
            token, state, pair = ("new", new_persons), LinkState.MATCH, None
            new_persons += 1
            outcome.new_person += 1
        else:
            token, pair, _ = ranked[0]
            state = LinkState.MATCH if decision == "linked" else LinkState.POSSIBLE_MATCH
            if decision == "linked":
                outcome.linked += 1
            else:
                outcome.review += 1
        if state == LinkState.MATCH:  # a provisional link lends its person to nobody (see CONFIRMED)
            person_of[record_id] = token
        probability = ranked[0][2] if pair is not None else None
        decisions.append((record_id, token, state, pair, probability,
                          ranked[:REVIEW_CANDIDATES] if decision == "review" else []))  # fmt: skip

    now = timezone.now()
    # Persons made in this batch hold only batch records, whose fields are in memory: each is
    # written with its golden record. Persons that existed before are refreshed at the end.
    members: list[list[BatchRecord]] = [[] for _ in range(new_persons)]
    for record, (_, token, *_) in zip(batch, decisions, strict=True):
        if token[0] == "new":
            members[token[1]].append(record)
    created = allocate_ids(Person, new_persons)

    def person_id(token: tuple) -> int:
        return token[1] if token[0] == "db" else created[token[1]]

    # The first batch of a new index fills these tables: they are then indexed once at the end.
    with indexes_built_after(Person, Link, LinkEvent, ReviewTask, ReviewCandidate):
        insert_rows(
            Person,
            ("id", "euid", "status", "golden", "created_at", "updated_at"),
            ((pk, euid, PersonStatus.ACTIVE, build_golden_record(records), now, now)
             for pk, euid, records in zip(created, new_euids(len(created)), members, strict=True)),
        )  # fmt: skip

        change = LinkChange.objects.create(kind=ChangeKind.AUTO_MATCH, reason=f"batch of {len(batch_ids)}")
        links, events, reviews = [], [], []
        explained = iter(scorer.explain_all(scored, [pair for _, _, _, pair, _, _ in decisions if pair is not None]))
        for record_id, token, state, pair, score, ranked in decisions:
            explanation = next(explained) if pair is not None else {}
            person = person_id(token)
            links.append((record_id, person, state, LinkSource.AUTO, score, explanation, scorer.version, now))
            events.append((change.pk, record_id, person, "", state, "", LinkSource.AUTO, score, {}, now))
            if ranked:
                reviews.append((record_id, score, ranked))
        insert_rows(Link, LINK_COLUMNS, links)
        insert_rows(LinkEvent, EVENT_COLUMNS, events)
        task_ids = allocate_ids(ReviewTask, len(reviews))
        insert_rows(
            ReviewTask,
            ("id", "record_id", "status", "top_score", "created_at"),
            (
                (task_id, record_id, ReviewStatus.OPEN, score, now)
                for task_id, (record_id, score, _) in zip(task_ids, reviews, strict=True)
            ),
        )  # fmt: skip
        candidates = [(task_id, token, i, probability)
                      for task_id, (_, _, ranked) in zip(task_ids, reviews, strict=True)
                      for token, i, probability in ranked]  # fmt: skip
        explanations = scorer.explain_all(scored, [i for _, _, i, _ in candidates])
        insert_rows(
            ReviewCandidate,
            ("task_id", "person_id", "score", "explanation"),
            (
                (task_id, person_id(token), probability, explanation)
                for (task_id, token, _, probability), explanation in zip(candidates, explanations, strict=True)
            ),
        )
    matched(batch_ids)
    refresh_golden_records(sorted({link[1] for link in links} - set(created)))
    if outcome.oversized_passes:
        logger.info("oversized blocks skipped", extra={"passes": outcome.oversized_passes})
    return outcome
