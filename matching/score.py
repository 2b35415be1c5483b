"""Fellegi-Sunter scoring: agreement levels to match weights, a probability, and an explanation.

A model is a set of m-probabilities (how often true matches show each agreement level) and
u-probabilities (how often non-matches do) per field, the prior probability that two random
records match, and term frequencies of names, so agreeing on a rare surname counts more than
agreeing on "Smith". Registrar rules then cap what the arithmetic may conclude: twins and
Jr/Sr pairs are never linked automatically.
"""

import math
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from django.conf import settings

from matching.compare import FIELD_INDEX, FIELDS, MISSING, RecordTable, compare, generations_apart, level_of

# Starting parameters, used until a model has been trained on the node's own data.
DEFAULT_M = {
    "given": [0.03, 0.01, 0.03, 0.05, 0.03, 0.85],
    "family": [0.03, 0.02, 0.05, 0.05, 0.85],
    "middle": [0.10, 0.20, 0.70],
    "birth_date": [0.02, 0.01, 0.05, 0.01, 0.91],
    "sex": [0.02, 0.98],
    "ssn": [0.02, 0.02, 0.04, 0.92],
    "phone": [0.30, 0.70],
    "email": [0.30, 0.70],
    "address": [0.15, 0.05, 0.10, 0.10, 0.60],
    "suffix": [0.05, 0.95],
}
DEFAULT_U = {
    "given": [0.93, 0.004, 0.04, 0.01, 0.006, 0.01],
    "family": [0.95, 0.03, 0.008, 0.002, 0.01],
    "middle": [0.85, 0.10, 0.05],
    "birth_date": [0.97, 0.025, 0.004, 0.00005, 0.0003],
    "sex": [0.50, 0.50],
    "ssn": [0.99989, 0.0001, 0.000009, 0.000001],
    "phone": [0.9999, 0.0001],
    "email": [0.99999, 0.00001],
    "address": [0.95, 0.03, 0.018, 0.001, 0.001],
    "suffix": [0.30, 0.70],
}
DEFAULT_PRIOR = 1e-5
TF_FIELDS = ("given", "family")

# Rules a registrar would insist on, applied after the arithmetic.
RULE_TWINS = "twins"  # same family name and (nearly) the same birth date, clearly different given names
# Jr and Sr (or II and III) are different people; so are a parent and a child of one family
# name born 15 to 50 years apart, with or without a suffix.
RULE_GENERATION = "generation"
RULE_SEX_WITH_SAME_BIRTH = "different_sex_same_birth"  # possibly twins: a person decides
RULE_HOUSEHOLD = "household"  # same family and home or phone, clearly different given names: a relative
RULE_SSN_CONFLICT = "ssn_conflict"  # two different valid SSNs: a person decides
RULE_BIRTH_CONFLICT = "birth_date_conflict"  # both birth dates known and far apart: namesakes, a person decides
RULE_NAMES_DIFFER = "names_differ"  # given and family names both disagree: whatever else agrees, a person decides
# Same family name and birth date, given names only alike (Sandra and Sarah, Lisa and Linda), or spelled
# almost alike (Theresa and Teresa) without the same middle name: twins or a misspelling; a person decides.
RULE_POSSIBLE_TWINS = "possible_twins"
# Names, birth date and sex, and nothing else agreeing (no SSN, phone, email or home): however
# rare the name, namesakes and misspellings look alike; a person decides (IHE PDQm: not certain).
RULE_DEMOGRAPHICS_ONLY = "demographics_only"
RULES = (RULE_TWINS, RULE_GENERATION, RULE_HOUSEHOLD, RULE_SEX_WITH_SAME_BIRTH, RULE_SSN_CONFLICT, RULE_BIRTH_CONFLICT,
         RULE_NAMES_DIFFER, RULE_POSSIBLE_TWINS, RULE_DEMOGRAPHICS_ONLY)  # fmt: skip
# What each rule does: never link (a score of at most REJECT_CAP), or leave it to a person (below auto-link).
REJECT_RULES = (RULE_TWINS, RULE_GENERATION, RULE_HOUSEHOLD)
REVIEW_RULES = (RULE_SEX_WITH_SAME_BIRTH, RULE_SSN_CONFLICT, RULE_BIRTH_CONFLICT, RULE_NAMES_DIFFER,
                RULE_POSSIBLE_TWINS, RULE_DEMOGRAPHICS_ONLY)  # fmt: skip
REJECT_CAP = 0.01
# Rules that, found between a record and any record of a candidate person, keep that person from
# being linked automatically: the person holds a relative of the record's patient, or another SSN.
CONFLICT_RULES = (*REJECT_RULES, RULE_SSN_CONFLICT)
CONFLICT_BITS = sum(1 << RULES.index(name) for name in CONFLICT_RULES)


def default_parameters() -> dict:
    return {"m": DEFAULT_M, "u": DEFAULT_U, "prior": DEFAULT_PRIOR, "tf": {}, "tf_floor": None}


def auto_link_threshold() -> float:
    return settings.MATCH_AUTO_LINK_THRESHOLD


def person_probability(best: float, conflict: bool) -> float:
    """A candidate person's probability for a record: its best pair's, but below automatic linking
    when another of the person's records conflicts with it (CONFLICT_RULES: a twin, Jr or Sr, a
    household member, another SSN). A chain of records must not carry a person into a relative's
    identity."""
    return min(best, math.nextafter(auto_link_threshold(), 0)) if conflict else best


def rank_persons(pairs: Iterable[tuple[Hashable, int]], scored: "ScoredPairs") -> list[tuple[Hashable, int, float]]:
    """Candidate persons, best first, from (person, pair index) pairs: each as (person, index of its
    best pair, its person_probability). Of persons with equal probabilities, the one whose best pair
    comes first (candidates are in id order) ranks first, whichever other pairs are given. One
    ranking for match-on-write, batch matching and $match."""
    best: dict[Hashable, int] = {}
    conflicting = set()  # persons one of whose records conflicts with the record (CONFLICT_RULES)
    probability, conflicts = scored.probabilities, scored.conflicts
    for person, i in pairs:
        if conflicts[i]:
            conflicting.add(person)
        if person not in best or probability[i] > probability[best[person]]:
            best[person] = i
    ranked = [(person, i, person_probability(probability[i], True) if person in conflicting else probability[i])
              for person, i in best.items()]  # fmt: skip
    return sorted(ranked, key=lambda item: (-item[2], item[1]))


def review_threshold() -> float:
    return settings.MATCH_REVIEW_THRESHOLD


def grade(probability: float) -> str:
    """The IHE PDQm / FHIR match-grade of a score (after the registrar rules): `certain` exactly
    where match-on-write would link on its own (services.decide), so never on names and birth date
    alone (RULE_DEMOGRAPHICS_ONLY); `probable` in the review band, `possible` above
    MATCH_POSSIBLE_THRESHOLD."""
    if probability >= auto_link_threshold():
        return "certain"
    if probability >= review_threshold():
        return "probable"
    if probability >= settings.MATCH_POSSIBLE_THRESHOLD:
        return "possible"
    return "certainly-not"


@dataclass
class ScoredPairs:
    levels: np.ndarray  # (pairs, fields) agreement levels
    probability: np.ndarray  # (pairs,) after rules
    # The weights (log2 Bayes factors, 0 where a side is missing) of some pairs, shape (pairs,
    # fields): worked out again for the few pairs explained, not kept for millions.
    weights_of: Callable[[list[int]], np.ndarray]
    rules: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # bit i set: RULES[i] applied

    @cached_property
    def probabilities(self) -> list[float]:
        """`probability` as a list, for loops that visit pairs one at a time."""
        return self.probability.tolist()

    @cached_property
    def conflict_mask(self) -> np.ndarray:
        """Per pair: whether a CONFLICT_RULES rule applied."""
        return (self.rules & CONFLICT_BITS) != 0

    @cached_property
    def conflicts(self) -> list[bool]:
        """`conflict_mask` as a list, for loops that visit pairs one at a time."""
        return self.conflict_mask.tolist()

    def rules_of(self, i: int) -> list[str]:
        applied = int(self.rules[i])
        return [name for bit, name in enumerate(RULES) if applied >> bit & 1] if applied else []


class Scorer:
    """A model's parameters turned into weight tables, ready to score any number of pairs."""

    def __init__(self, parameters: dict, version: int | None = None) -> None:
        self.version = version
        self.parameters = parameters
        self.prior_weight = math.log2(parameters["prior"] / (1 - parameters["prior"]))
        self.tables = []
        for f in FIELDS:
            m = np.asarray(parameters["m"][f.name], dtype=float)
            u = np.asarray(parameters["u"][f.name], dtype=float)
            # index len(levels) is MISSING (-1 wraps to the last slot): no evidence either way
            self.tables.append(np.append(np.log2(m / u), 0.0))
        self.tf = {name: parameters.get("tf", {}).get(name, {}) for name in TF_FIELDS}
        self.tf_floor = parameters.get("tf_floor")

    def _tf_weights(self, table: RecordTable, field_name: str, index: np.ndarray) -> np.ndarray:
        """log2(m_exact / tf(value)) for the value each pair agrees on."""
        frequencies = self.tf[field_name]
        by_code = np.array([frequencies.get(v, self.tf_floor) for v in getattr(table, f"{field_name}_uniques")])
        tf = by_code[getattr(table, f"{field_name}_code")[index]]
        m_exact = self.parameters["m"][field_name][-1]
        return np.log2(m_exact / tf)

    def _field_weights(self, table: RecordTable, left: np.ndarray, levels: np.ndarray) -> Iterator[np.ndarray]:
        """Each field's weights for the pairs, a field at a time."""
        for i, table_of_field in enumerate(self.tables):
            weights = table_of_field[levels[:, i]]
            if self.tf_floor and FIELDS[i].name in TF_FIELDS:
                exact = np.flatnonzero(levels[:, i] == len(FIELDS[i].levels) - 1)
                if len(exact):
                    weights[exact] = self._tf_weights(table, FIELDS[i].name, np.asarray(left)[exact])
            yield weights

    def weigh(self, table: RecordTable, left: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """The weights of the pairs, shape (pairs, fields)."""
        weights = np.zeros(levels.shape, dtype=float, order="F")
        for i, field_weights in enumerate(self._field_weights(table, left, levels)):
            weights[:, i] = field_weights
        return weights

    def score(self, table: RecordTable, left: np.ndarray, right: np.ndarray) -> ScoredPairs:
        levels = compare(table, left, right)
        # The fields' weights are added up as they come, in field order (the order a sum over a
        # pair's row of weights takes): a batch's millions of pairs never hold them all at once.
        weights = self._field_weights(table, left, levels)
        total = next(weights)  # a new array: summed into in place
        for field_weights in weights:
            total += field_weights
        total = self.prior_weight + total
        probability = 1.0 / (1.0 + np.exp2(-np.clip(total, -60, 60)))
        probability, rules = apply_rules(levels, probability, generations_apart(table, left, right))
        left = np.asarray(left)

        def weights_of(pairs: list[int]) -> np.ndarray:
            return self.weigh(table, left[pairs], levels[pairs])

        return ScoredPairs(levels=levels, probability=probability, rules=rules, weights_of=weights_of)

    def explain(self, scored: ScoredPairs, i: int) -> dict:
        """What each field contributed to pair i, for reviewers and for the stored link."""
        return self.explain_all(scored, [i])[0]

    def explain_all(self, scored: ScoredPairs, pairs: list[int]) -> list[dict]:
        """explain() of each of these pairs, their rows taken from the arrays at once (a batch
        explains tens of thousands)."""
        prior_weight = round(self.prior_weight, 2)
        # Weights to two decimals and probabilities to six, rounded all at once.
        rows = zip(scored.levels[pairs].tolist(), np.round(scored.weights_of(pairs), 2).tolist(),
                   np.round(scored.probability[pairs], 6).tolist(), pairs, strict=True)  # fmt: skip
        return [
            {
                "model_version": self.version,
                "prior_weight": prior_weight,
                "fields": _contributions(levels, weights),
                "rules": scored.rules_of(i),
                "probability": probability,
            }
            for levels, weights, probability, i in rows
        ]


def _contributions(levels: list[int], weights: list[float]) -> list[dict]:
    return [
        {"field": f.name, "level": "missing" if level == MISSING else f.levels[level], "weight": weight}
        for f, level, weight in zip(FIELDS, levels, weights, strict=True)
    ]


def apply_rules(
    levels: np.ndarray, probability: np.ndarray, generation_apart: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cap the probability where a registrar's rule says the arithmetic must not decide.

    Relatives share a family name, a home and a phone; the weights of those fields would
    otherwise outvote a clearly different given name or SSN. `generation_apart` says per pair
    whether the birth years lie a generation apart (compare.generations_apart): a father and a
    son of the same names and home mostly come without a suffix.
    """
    if generation_apart is None:
        generation_apart = np.zeros(len(probability), dtype=bool)
    family = levels[:, FIELD_INDEX["family"]]
    birth = levels[:, FIELD_INDEX["birth_date"]]
    given = levels[:, FIELD_INDEX["given"]]
    suffix = levels[:, FIELD_INDEX["suffix"]]
    sex = levels[:, FIELD_INDEX["sex"]]
    ssn = levels[:, FIELD_INDEX["ssn"]]
    address = levels[:, FIELD_INDEX["address"]]
    phone = levels[:, FIELD_INDEX["phone"]]
    same_family = family >= level_of("family", "very_similar")
    similar_family = family >= level_of("family", "similar")
    near_birth = birth >= level_of("birth_date", "one_digit")
    different_given = given == level_of("given", "different")
    middle = levels[:, FIELD_INDEX["middle"]]
    alike_given = (
        (given == level_of("given", "initial"))
        | (given == level_of("given", "similar"))
        | ((given == level_of("given", "very_similar")) & (middle != level_of("middle", "exact")))
    )
    agreeing_given = given >= level_of("given", "nickname")
    shared_home = (address >= level_of("address", "similar_street")) | (phone == level_of("phone", "same"))
    # Relatives do not share an SSN: agreement on it overrides the relative rules.
    same_ssn = ssn >= level_of("ssn", "one_digit")
    email = levels[:, FIELD_INDEX["email"]]
    corroborated = same_ssn | shared_home | (email == level_of("email", "same"))

    rules_by_name = {
        RULE_TWINS: same_family & near_birth & different_given & ~same_ssn,
        RULE_GENERATION: (suffix == level_of("suffix", "different")) | (similar_family & generation_apart & ~same_ssn),
        RULE_HOUSEHOLD: similar_family & shared_home & different_given & ~same_ssn,
        # Twins of two sexes bear two names: with the same given name, a different sex is a slip.
        RULE_SEX_WITH_SAME_BIRTH: same_family & near_birth & (sex == level_of("sex", "different")) & ~agreeing_given,
        # An SSN that differs where the given name and birth date are the same is a slip that the
        # weights can outvote (twins do not share a given name); otherwise it may be a twin
        # (Gerald and Jerry) or a father and son of one name and home, and a person decides.
        RULE_SSN_CONFLICT: (ssn == level_of("ssn", "different"))
        & ~(near_birth & ~generation_apart & (given == level_of("given", "exact"))),
        # Likewise a birth date that differs where the SSN is the same, unless a generation apart.
        RULE_BIRTH_CONFLICT: (birth == level_of("birth_date", "different"))
        & ~((ssn == level_of("ssn", "exact")) & ~generation_apart),
        # Both names differ: a person decides, unless the SSN and the birth date are both the same
        # (two identifiers of one patient, the names mistyped or recorded in another form).
        RULE_NAMES_DIFFER: different_given
        & (family == level_of("family", "different"))
        & ~((ssn == level_of("ssn", "exact")) & (birth == level_of("birth_date", "exact"))),
        RULE_POSSIBLE_TWINS: same_family & near_birth & alike_given & ~same_ssn,
        RULE_DEMOGRAPHICS_ONLY: ~corroborated,
    }
    probability = probability.copy()
    reject = np.logical_or.reduce([rules_by_name[name] for name in REJECT_RULES])
    probability[reject] = np.minimum(probability[reject], REJECT_CAP)
    review = np.logical_or.reduce([rules_by_name[name] for name in REVIEW_RULES])
    probability[review] = np.minimum(probability[review], np.nextafter(auto_link_threshold(), 0))

    rules = np.zeros(len(probability), dtype=np.int64)
    for bit, name in enumerate(RULES):
        rules |= rules_by_name[name].astype(np.int64) << bit
    return probability, rules
