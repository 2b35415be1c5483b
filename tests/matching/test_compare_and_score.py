"""Agreement levels and the registrar's rules, on pairs a registrar would recognise."""

from datetime import date

import numpy as np
import pytest

from matching.compare import FIELDS, RecordTable, compare
from matching.normalize import normalise
from matching.score import (
    REJECT_RULES,
    REVIEW_RULES,
    RULE_BIRTH_CONFLICT,
    RULE_GENERATION,
    RULE_SEX_WITH_SAME_BIRTH,
    RULE_SSN_CONFLICT,
    RULE_TWINS,
    RULES,
    ScoredPairs,
    Scorer,
    auto_link_threshold,
    default_parameters,
    grade,
    rank_persons,
)

BASE = {
    "given_name": "Katherine", "family_name": "Oyelaran", "sex": "female", "birth_date": date(1979, 3, 14),
    "ssn": "521-43-8876", "phones": ["503-555-0142"], "address_line": "77 Larch St", "city": "Salem",
    "postal_code": "97301",
}  # fmt: skip


def levels(a: dict, b: dict) -> dict:
    row = compare(RecordTable([normalise(**a), normalise(**b)]), np.array([0]), np.array([1]))[0]
    return {f.name: (f.levels[v] if v >= 0 else "missing") for f, v in zip(FIELDS, row, strict=True)}


def probability(a: dict, b: dict) -> tuple[float, list[str]]:
    scorer = Scorer(default_parameters(), version=0)
    scored = scorer.score(RecordTable([normalise(**a), normalise(**b)]), np.array([0]), np.array([1]))
    return float(scored.probability[0]), scored.rules_of(0)


def test_nickname_counts_as_agreement():
    assert levels(BASE, {**BASE, "given_name": "Kathy"})["given"] == "nickname"


def test_a_short_form_counts_as_a_nickname_but_an_alike_name_does_not():
    assert levels({**BASE, "given_name": "Marisol"}, {**BASE, "given_name": "Mari"})["given"] == "nickname"
    assert levels({**BASE, "given_name": "Sandra"}, {**BASE, "given_name": "Sarah"})["given"] == "similar"


def test_given_and_family_swapped_agree():
    swapped = {**BASE, "given_name": "Oyelaran", "family_name": "Katherine"}
    got = levels(BASE, swapped)
    assert (got["given"], got["family"]) == ("nickname", "shared_part")


@pytest.mark.parametrize(
    ("other", "level"),
    [(date(1979, 3, 14), "exact"), (date(1979, 14 % 12, 3), "same_year"), (date(1979, 3, 15), "one_digit"),
     (date(1989, 3, 14), "one_digit"), (date(1979, 11, 2), "same_year"), (date(1955, 6, 1), "different")],
)  # fmt: skip
def test_birth_date_levels(other, level):
    assert levels(BASE, {**BASE, "birth_date": other})["birth_date"] == level


def test_day_and_month_transposed():
    a = {**BASE, "birth_date": date(1979, 3, 4)}
    assert levels(a, {**BASE, "birth_date": date(1979, 4, 3)})["birth_date"] == "day_month_swapped"


@pytest.mark.parametrize(
    ("ssn", "level"), [("521-43-8876", "exact"), ("521-43-8867", "one_digit"), ("xxx-xx-8876", "last_four"),
                       ("612-98-1234", "different"), ("", "missing")],
)  # fmt: skip
def test_ssn_levels(ssn, level):
    assert levels(BASE, {**BASE, "ssn": ssn})["ssn"] == level


def test_same_person_with_typos_scores_certain():
    typo = {**BASE, "given_name": "Katharine", "ssn": "521-43-8867", "address_line": "77 Larch Street"}
    p, rules = probability(BASE, typo)
    assert grade(p) == "certain"
    assert rules == []


def test_twins_are_never_linked():
    twin = {**BASE, "given_name": "Olumide", "ssn": "", "phones": BASE["phones"]}
    p, rules = probability({**BASE, "ssn": ""}, twin)
    assert RULE_TWINS in rules
    assert grade(p) == "certainly-not"


def test_junior_and_senior_are_never_linked():
    senior = {**BASE, "given_name": "Daniel", "sex": "male", "family_name": "Oyelaran Sr", "ssn": ""}
    junior = {**senior, "family_name": "Oyelaran", "suffix": "Jr"}
    p, rules = probability(senior, junior)
    assert RULE_GENERATION in rules
    assert grade(p) == "certainly-not"


def test_every_rule_has_an_effect():
    assert set(RULES) == set(REJECT_RULES) | set(REVIEW_RULES)
    assert not set(REJECT_RULES) & set(REVIEW_RULES)


def test_pair_whose_names_both_differ_is_left_to_a_person():
    relative = {**BASE, "given_name": "Sophia", "family_name": "Martinez", "ssn": ""}
    p, rules = probability({**BASE, "ssn": ""}, relative)
    assert "names_differ" in rules
    assert p < 0.95


def test_stranger_is_certainly_not():
    stranger = {"given_name": "Tobias", "family_name": "Lindqvist", "sex": "male", "birth_date": date(1961, 9, 30)}
    assert grade(probability(BASE, stranger)[0]) == "certainly-not"


def test_rare_surname_agreement_weighs_more_than_a_common_one():
    parameters = default_parameters()
    parameters["tf"] = {"family": {"SMITH": 0.01, "OYELARAN": 0.00001}, "given": {}}
    parameters["tf_floor"] = 0.00001
    scorer = Scorer(parameters, version=1)
    table = RecordTable([normalise(family_name="Smith"), normalise(family_name="Smith"),
                         normalise(family_name="Oyelaran"), normalise(family_name="Oyelaran")])  # fmt: skip
    scored = scorer.score(table, np.array([0, 2]), np.array([1, 3]))
    family = [f.name for f in FIELDS].index("family")
    weights = scored.weights_of([0, 1])
    assert weights[1, family] > weights[0, family] + 5
    assert (weights == scorer.weigh(table, np.array([0, 2]), scored.levels)).all()


def _scored(probabilities: list[float], conflicting: tuple[int, ...] = ()) -> ScoredPairs:
    rules = np.zeros(len(probabilities), np.int64)
    rules[list(conflicting)] = 1 << RULES.index(RULE_SSN_CONFLICT)
    empty = np.zeros((len(probabilities), len(FIELDS)))
    return ScoredPairs(
        levels=empty, probability=np.array(probabilities), weights_of=lambda pairs: empty[pairs], rules=rules
    )


def test_of_persons_with_equal_scores_the_one_whose_best_pair_comes_first_ranks_first():
    scored = _scored([0.10, 0.99, 0.99, 0.40])
    # Person "a" is met first, through a weak pair; "b"'s best pair comes before "a"'s.
    everything = rank_persons([("a", 0), ("b", 1), ("a", 2), ("c", 3)], scored)
    assert [(person, i) for person, i, _ in everything] == [("b", 1), ("a", 2), ("c", 3)]
    # Ranking only the pairs that reach review gives the same head.
    assert rank_persons([("b", 1), ("a", 2)], scored) == everything[:2]


def test_a_conflicting_pair_bars_its_person_from_linking_however_weak_the_pair():
    scored = _scored([0.99, 0.05], conflicting=(1,))
    [(person, i, probability)] = rank_persons([("a", 0), ("a", 1)], scored)
    assert (person, i) == ("a", 0)
    assert probability < auto_link_threshold() <= 0.99


def test_one_edit_apart_agrees_with_the_edit_distance_on_random_identifiers():
    import random

    from rapidfuzz.distance import DamerauLevenshtein

    from matching.compare import _one_edit_apart, _Pairs

    rng = random.Random(5)  # noqa: S311 - synthetic test values
    values = []
    for _ in range(600):
        base = "".join(rng.choice("0123456789") for _ in range(rng.choice([9, 9, 7, 11])))
        changed, at = list(base), rng.randrange(len(base))
        edit = rng.randrange(5)
        if edit == 0:
            changed[at] = rng.choice("0123456789")
        elif edit == 1 and at < len(changed) - 1:
            changed[at], changed[at + 1] = changed[at + 1], changed[at]
        elif edit == 2:
            del changed[at]
        elif edit == 3:
            changed.insert(at, rng.choice("0123456789"))
        else:
            changed[at] = "\u0663"  # a digit, but not an ASCII one
        values += [base, "".join(changed)]
    table = RecordTable([{"ssn": v} for v in values])
    left = np.array([rng.randrange(len(values)) for _ in range(3000)] + list(range(0, len(values), 2)))
    right = np.array([rng.randrange(len(values)) for _ in range(3000)] + list(range(1, len(values), 2)))
    pairs = _Pairs(table, left, right)
    a, b, missing = pairs.codes("ssn")
    found = _one_edit_apart(pairs, "ssn", ~missing & (a != b))
    expected = [
        x != y and DamerauLevenshtein.distance(x, y) == 1
        for x, y in zip(table.ssn[left], table.ssn[right], strict=True)
    ]
    assert found.tolist() == expected
    assert 300 < sum(expected) < len(expected)


def test_a_large_set_of_pairs_compared_in_shares_gives_the_levels_of_one_share(monkeypatch):
    import matching.compare
    from matching.compare import _compare
    from matching.csv_input import parse_row
    from matching.synthetic import generate

    rows = generate(400, seed=3).rows
    table = RecordTable([normalise(**parse_row(n, row).demographics.as_fields()) for n, row in enumerate(rows)])
    rng = np.random.default_rng(9)
    left = rng.integers(0, len(rows), 5000)
    right = rng.integers(0, len(rows), 5000)
    here = _compare(table, left, right)
    shares = []

    def counted(table, left, right, workers=-1):
        shares.append(len(left))
        return _compare(table, left, right, workers)

    monkeypatch.setattr(matching.compare, "PAIRS_PER_SHARE", 1000)
    monkeypatch.setattr(matching.compare, "_compare", counted)
    monkeypatch.setattr(matching.compare.os, "cpu_count", lambda: 2)
    spread = compare(table, left, right)
    assert shares == [1000] * 5, "five shares of at most 1,000 pairs"
    assert spread.dtype == here.dtype
    assert spread.flags.f_contiguous, "levels lie field by field"
    assert np.array_equal(spread, here)
    assert len(np.unique(here, axis=0)) > 50, "the pairs cover many patterns"


def test_pairs_share_a_value_wherever_it_sits_among_their_values():
    from matching.compare import _any_shared

    rng = np.random.default_rng(11)
    counts = rng.integers(0, 5, 300)
    codes = np.full((300, 4), -1, dtype=np.int64)
    for row, count in enumerate(counts):
        codes[row, :count] = rng.choice(12, count, replace=False)
    left, right = rng.integers(0, 300, 5000), rng.integers(0, 300, 5000)
    expected = [
        bool(set(codes[a][codes[a] >= 0]) & set(codes[b][codes[b] >= 0])) for a, b in zip(left, right, strict=True)
    ]
    found = _any_shared(codes, left, right)
    assert found.tolist() == expected
    assert found.any()
    assert not found.all()
    assert (found & ((codes[left, 1] >= 0) | (codes[right, 1] >= 0)) & (codes[left, 0] != codes[right, 0])).any()


def test_father_and_son_without_suffix_are_not_linked_automatically():
    father = {**BASE, "given_name": "Daniel", "sex": "male", "birth_date": date(1961, 5, 2), "ssn": ""}
    son = {**father, "birth_date": date(1989, 11, 23), "ssn": "521-43-8876"}
    p, rules = probability(father, son)
    assert RULE_GENERATION in rules
    assert grade(p) == "certainly-not"


def test_birth_years_a_generation_apart_with_the_same_ssn_are_left_to_a_person():
    # One SSN for both: a mistyped year, not a parent and a child; a person decides.
    record = {**BASE, "birth_date": date(1961, 5, 2)}
    p, rules = probability(record, {**record, "birth_date": date(1987, 5, 2)})
    assert RULE_GENERATION not in rules
    assert grade(p) == "probable"


def test_a_different_sex_with_the_same_names_and_birth_date_is_a_slip_not_twins():
    # The same names, birth date and home, the sex written wrong on one record: no SSN to agree.
    record = {**BASE, "ssn": ""}
    p, rules = probability(record, {**record, "sex": "male"})
    assert RULE_SEX_WITH_SAME_BIRTH not in rules
    assert grade(p) == "certain"


def test_twins_of_two_sexes_with_alike_names_are_left_to_a_person():
    sister = {**BASE, "given_name": "Jordana", "ssn": ""}
    brother = {**sister, "given_name": "Jordan", "sex": "male"}
    p, rules = probability(sister, brother)
    assert RULE_SEX_WITH_SAME_BIRTH in rules
    assert grade(p) != "certain"


def test_a_mistyped_ssn_with_the_same_names_and_birth_date_is_left_to_the_weights():
    p, rules = probability(BASE, {**BASE, "ssn": "521-97-8312"})
    assert RULE_SSN_CONFLICT not in rules
    assert grade(p) == "certain"


def test_another_ssn_without_a_birth_date_to_compare_is_left_to_a_person():
    # A tax form has no birth date: the same names and home with another SSN may be a father and son.
    father = {**BASE, "given_name": "Daniel", "sex": "", "birth_date": None}
    p, rules = probability(father, {**father, "ssn": "521-97-8312"})
    assert RULE_SSN_CONFLICT in rules
    assert grade(p) != "certain"


def test_a_mistyped_birth_date_with_the_same_ssn_is_left_to_the_weights():
    p, rules = probability(BASE, {**BASE, "birth_date": date(1979, 8, 30)})
    assert RULE_BIRTH_CONFLICT not in rules
    assert grade(p) == "certain"


def test_both_names_different_with_the_same_ssn_and_birth_date_are_left_to_the_weights():
    p, rules = probability(BASE, {**BASE, "given_name": "Olumide", "family_name": "Brooks"})
    assert "names_differ" not in rules
    assert grade(p) == "certain"
