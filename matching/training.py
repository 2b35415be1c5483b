"""Training the Fellegi-Sunter model on the node's own records.

u-probabilities come from random pairs (almost all non-matches); m-probabilities from
expectation-maximisation over the blocked candidate pairs with u held fixed; term
frequencies of given and family names from the records themselves. Staff review decisions
(PairLabel) clamp the posterior of their pairs and measure the model.
"""

import math
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from hie.bulk import alongside, among, bigint_rows, without_cycle_collection
from matching.arrays import members
from matching.blocking import blocking_keys, candidate_pairs, pairs_sharing, pass_range
from matching.compare import FIELDS, MISSING, RecordTable, compare, level_of
from matching.models import BlockingKey, MatchModel, ModelStatus, PairLabel, PatientRecord, TrainingRun
from matching.score import DEFAULT_M, TF_FIELDS, Scorer
from matching.selectors import norms_of

SMOOTHING = 1.0  # pseudo-count per level: no probability is ever exactly 0 or 1
TF_TABLE_SIZE = 50_000


@dataclass
class TrainingResult:
    parameters: dict
    candidate_pairs: int
    random_pairs: int
    iterations: int


def _level_counts(levels: np.ndarray, weights: np.ndarray | None = None) -> list[np.ndarray]:
    counts = []
    for j, f in enumerate(FIELDS):
        column = levels[:, j]
        present = column != MISSING
        kept_weights = None if weights is None else weights[present]
        counts.append(np.bincount(column[present], weights=kept_weights, minlength=len(f.levels)).astype(float))
    return counts


def _normalised(counts: np.ndarray) -> list[float]:
    smoothed = counts + SMOOTHING
    return (smoothed / smoothed.sum()).tolist()


def estimate_u(table: RecordTable, random_pairs: int, rng: np.random.Generator) -> dict:
    left = rng.integers(0, table.size, random_pairs)
    right = rng.integers(0, table.size, random_pairs)
    keep = left != right
    levels = compare(table, left[keep], right[keep])
    return {f.name: _normalised(c) for f, c in zip(FIELDS, _level_counts(levels), strict=True)}


def term_frequencies(table: RecordTable) -> tuple[dict, float]:
    frequencies = {}
    for name in TF_FIELDS:
        values, counts = np.unique(np.asarray(getattr(table, name), dtype=str), return_counts=True)
        order = np.argsort(-counts)[:TF_TABLE_SIZE]
        frequencies[name] = {
            str(values[i]): float(counts[i]) / table.size for i in order if counts[i] >= 2 and values[i]
        }
    return frequencies, 1.0 / max(table.size, 1)


def _distinct_rows(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(levels, axis=0, return_inverse=True, return_counts=True), rows in the same order,
    by way of one integer per row: a digit in base 8 per field (MISSING becomes 0), the first
    field the most significant. Sorting rows as rows took seconds on a million pairs."""
    digits = levels.astype(np.int64) + 1
    if levels.shape[1] > 20 or (digits.size and (digits.min() < 0 or digits.max() > 7)):
        raise ValueError("agreement levels must fit a base-8 digit each, 20 fields at most")
    codes = digits @ (8 ** np.arange(digits.shape[1] - 1, -1, -1, dtype=np.int64))
    _, first, inverse, counts = np.unique(codes, return_index=True, return_inverse=True, return_counts=True)
    return levels[first], inverse.ravel(), counts


def expectation_maximisation(
    levels: np.ndarray,
    u: dict,
    clamped: np.ndarray | None = None,
    *,
    start: dict | None = None,
    held: frozenset[str] = frozenset(),
    iterations: int = 40,
    tolerance: float = 1e-6,
) -> tuple[dict, float, int]:
    """m-probabilities and the share of matches among the candidate pairs, with u fixed.

    `clamped` holds a known posterior (1 or 0) per pair, NaN where unknown. Fields in `held`
    keep their starting m: the pairs were chosen by agreement on them, so they say nothing
    about how often true matches agree there.
    """
    patterns, inverse, counts = _distinct_rows(levels)
    fixed = np.full(len(patterns), np.nan)
    weights = counts.astype(float)
    if clamped is not None and not np.all(np.isnan(clamped)):
        # Labelled pairs become patterns of their own so their posterior can be held.
        known = ~np.isnan(clamped)
        patterns = np.vstack([patterns, levels[known]])
        weights = np.concatenate([np.bincount(inverse[~known], minlength=len(counts)).astype(float),
                                  np.ones(known.sum())])  # fmt: skip
        fixed = np.concatenate([fixed, clamped[known]])
    # Held fields chose the pairs: they are left out of the likelihood altogether.
    scored_fields = [(j, f) for j, f in enumerate(FIELDS) if f.name not in held]
    log_u = np.zeros(len(patterns))
    for j, f in scored_fields:
        table = np.append(np.log(np.asarray(u[f.name])), 0.0)
        log_u += table[patterns[:, j]]
    m = {f.name: list((start or DEFAULT_M)[f.name]) for f in FIELDS}
    share = 0.1
    done = 0
    while done < iterations:
        done += 1
        log_m = np.zeros(len(patterns))
        for j, f in scored_fields:
            table = np.append(np.log(np.asarray(m[f.name])), 0.0)
            log_m += table[patterns[:, j]]
        odds = np.log(share) - np.log1p(-share) + log_m - log_u
        posterior = 1.0 / (1.0 + np.exp(-np.clip(odds, -700, 700)))
        posterior = np.where(np.isnan(fixed), posterior, fixed)
        new_share = float(np.clip((posterior * weights).sum() / weights.sum(), 1e-9, 1 - 1e-9))
        counts = _level_counts(patterns, posterior * weights)
        new_m = {f.name: m[f.name] if f.name in held else _normalised(c) for f, c in zip(FIELDS, counts, strict=True)}
        change = max(abs(a - b) for f in FIELDS for a, b in zip(new_m[f.name], m[f.name], strict=True))
        change = max(change, abs(new_share - share))
        m, share = new_m, new_share
        if change < tolerance:
            break
    return m, share, done


# EM sessions, as (blocking passes that choose the pairs, fields those passes agree on).
SESSIONS = (
    (("dob",), frozenset({"birth_date"})),
    (("fam_given",), frozenset({"given", "family"})),
)


def _session_pairs(
    norms: list[dict], passes: tuple[str, ...], labelled: dict, cap: int, filed: tuple | None = None
) -> tuple[np.ndarray, np.ndarray]:
    if filed is None:
        left, right, _ = candidate_pairs([blocking_keys(n, passes) for n in norms], cap)
    else:
        left, right, _ = pairs_sharing(*filed, len(norms), cap)
    present = set(zip(left.tolist(), right.tolist(), strict=True))
    extra = [pair for pair in labelled if pair not in present]
    if extra:
        left = np.concatenate([left, np.array([a for a, _ in extra], dtype=np.int64)])
        right = np.concatenate([right, np.array([b for _, b in extra], dtype=np.int64)])
    return left, right


def train(
    norms: list[dict],
    *,
    labels: list[tuple[int, int, bool]] = (),
    random_pairs: int = 400_000,
    block_cap: int = 500,
    seed: int = 20261125,
    filed: dict | None = None,
    table: RecordTable | None = None,
) -> TrainingResult:
    """Train on normalised records; `labels` are (position, position, is_match) into `norms`.
    `filed` may give, by the passes of a session, the keys the records are filed under already
    as (keys, positions into `norms`); otherwise they are computed from `norms`. `table` may
    give the records' table, built already.

    EM runs once per session of SESSIONS, on the pairs one blocking pass chooses, and a field
    is never estimated from the session whose pairs were chosen by agreeing on it. Pooling all
    candidate pairs instead lets EM mistake "shares a block" (same surname and birth year) for
    "same person".
    """
    if len(norms) < 50:
        raise ValueError("at least 50 records are needed to train the model")
    rng = np.random.default_rng(seed)
    table = table if table is not None else RecordTable(norms)
    u = estimate_u(table, random_pairs, rng)
    labelled = {(min(a, b), max(a, b)): float(is_match) for a, b, is_match in labels}
    m = {f.name: list(DEFAULT_M[f.name]) for f in FIELDS}
    results = []
    for passes, held in SESSIONS:
        left, right = _session_pairs(norms, passes, labelled, block_cap, (filed or {}).get(passes))
        if not len(left):
            continue
        levels = compare(table, left, right)
        clamped = np.array([labelled.get(pair, np.nan) for pair in zip(left.tolist(), right.tolist(), strict=True)])
        session_m, share, iterations = expectation_maximisation(levels, u, clamped, start=m, held=held)
        m = {name: m[name] if name in held else values for name, values in session_m.items()}
        results.append((passes, len(left), share, iterations))
    if not results:
        raise ValueError("no candidate pairs to train on")
    # Matches among the birth-date pairs, over the share of true matches whose birth dates
    # agree (exactly or day/month swapped, as the dob pass keys them): all matches.
    birth = m["birth_date"]
    dob_recall = birth[level_of("birth_date", "exact")] + birth[level_of("birth_date", "day_month_swapped")]
    _, dob_pairs, dob_share, _ = results[0]
    all_pairs = table.size * (table.size - 1) / 2
    prior = min(max(dob_share * dob_pairs / max(dob_recall, 0.05) / all_pairs, 1e-12), 0.5)
    tf, tf_floor = term_frequencies(table)
    parameters = {"m": m, "u": u, "prior": prior, "tf": tf, "tf_floor": tf_floor}
    return TrainingResult(parameters, sum(r[1] for r in results), int(random_pairs), sum(r[3] for r in results))


def evaluate(parameters: dict, table: RecordTable, labels: list[tuple[int, int, bool]], thresholds: dict) -> dict:
    """Precision and recall of the model on labelled pairs (positions in `table`) at the
    configured thresholds."""
    if not labels:
        return {"labelled_pairs": 0}
    scorer = Scorer(parameters)
    left = np.array([a for a, _, _ in labels], dtype=np.int64)
    right = np.array([b for _, b, _ in labels], dtype=np.int64)
    truth = np.array([m for _, _, m in labels], dtype=bool)
    probability = scorer.score(table, left, right).probability
    report = {"labelled_pairs": len(labels), "matches": int(truth.sum())}
    for name, threshold in thresholds.items():
        predicted = probability >= threshold
        tp = int((predicted & truth).sum())
        precision = tp / predicted.sum() if predicted.sum() else math.nan
        recall = tp / truth.sum() if truth.sum() else math.nan
        report[name] = {"threshold": threshold, "precision": precision, "recall": recall}
    return report


# --- the stored, versioned model -----------------------------------------------------------


def _stored_keys(record_ids: list[int], passes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The stored blocking keys of these passes that the records (ids ascending) are filed under,
    with each one's record as its position in `record_ids`. Each pass is one range of the key
    index: deriving the keys again from the records took the most of a training run's time."""
    ordered = np.array(record_ids, dtype=np.int64)
    rows = np.concatenate([
        bigint_rows(BlockingKey.objects.filter(key__gte=low, key__lt=high).values_list("key", "record_id"))
        for low, high in map(pass_range, passes)
    ])  # fmt: skip
    rows = rows[members(rows[:, 1], ordered)]
    return rows[:, 0], np.searchsorted(ordered, rows[:, 1])


@without_cycle_collection()
def train_and_activate(run_id: int, *, max_records: int = 50_000) -> MatchModel:
    """Train on (a sample of) the active records, store the model as the next version, activate it."""
    run = TrainingRun.objects.get(pk=run_id)
    run.status, run.progress, run.message = TrainingRun.Status.RUNNING, 5, "loading records"
    run.save(update_fields=["status", "progress", "message"])
    try:
        ids = list(PatientRecord.objects.filter(active=True).order_by("pk").values_list("pk", flat=True))
        if len(ids) > max_records:
            ids = sorted(np.random.default_rng(len(ids)).choice(ids, max_records, replace=False).tolist())
        norms_by_id = dict(norms_of(PatientRecord.objects.filter(pk__in=among(ids))))
        position = {record_id: i for i, record_id in enumerate(ids)}
        norms = [norms_by_id[i] for i in ids]
        labels = [
            (position[a], position[b], is_match)
            for a, b, is_match in PairLabel.objects.values_list("record_a_id", "record_b_id", "is_match")
            if a in position and b in position
        ]
        run.progress, run.message = 25, f"training on {len(norms)} records"
        run.save(update_fields=["progress", "message"])
        # The sessions' keys are read on a connection of their own while the records' table is built.
        with alongside(lambda: {passes: _stored_keys(ids, passes) for passes, _ in SESSIONS}) as filed:
            table = RecordTable(norms)
        result = train(norms, labels=labels, block_cap=settings.MATCH_BLOCK_CAP, filed=filed.value, table=table)
        run.progress, run.message = 85, "evaluating"
        run.save(update_fields=["progress", "message"])
        thresholds = {"auto_link": settings.MATCH_AUTO_LINK_THRESHOLD, "review": settings.MATCH_REVIEW_THRESHOLD}
        evaluation = {
            "candidate_pairs": result.candidate_pairs,
            "random_pairs": result.random_pairs,
            "em_iterations": result.iterations,
            "prior": result.parameters["prior"],
            "labels": evaluate(result.parameters, table, labels, thresholds),
        }
        with transaction.atomic():
            version = (MatchModel.objects.aggregate(v=Max("version"))["v"] or 0) + 1
            MatchModel.objects.filter(status=ModelStatus.ACTIVE).update(status=ModelStatus.RETIRED)
            model = MatchModel.objects.create(
                version=version, parameters=result.parameters, evaluation=evaluation, records_trained_on=len(norms)
            )
            run.status, run.progress, run.model = TrainingRun.Status.DONE, 100, model
            run.message, run.finished_at = f"model v{version} active", timezone.now()
            run.save()
        return model
    except ValueError as exc:
        run.status, run.message, run.finished_at = TrainingRun.Status.FAILED, str(exc), timezone.now()
        run.save(update_fields=["status", "message", "finished_at"])
        raise


def request_training(*, requested_by_id: int | None = None) -> TrainingRun:
    """Queue a training run (the worker trains and activates the model); a run already waiting is reused."""
    from matching.tasks import train_model_task  # matching.tasks imports this module

    with transaction.atomic():
        waiting = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED).order_by("pk").first()
        if waiting is not None:
            return waiting
        run = TrainingRun.objects.create(requested_by_id=requested_by_id, message="waiting for a worker")
        transaction.on_commit(lambda: train_model_task.delay(run.pk))
    return run
