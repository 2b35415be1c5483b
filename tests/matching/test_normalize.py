from datetime import date

import pytest

from matching.normalize import nickname_group, normalise, normalise_phone, normalise_ssn, normalise_street


def test_case_accents_and_punctuation_fold_away():
    a = normalise(given_name="José", family_name="O'Brien")
    b = normalise(given_name="JOSE", family_name="obrien")
    assert (a["given"], a["family"]) == (b["given"], b["family"]) == ("JOSE", "OBRIEN")


def test_suffix_is_split_out_of_the_name():
    norm = normalise(given_name="Robert", family_name="Miller Jr.")
    assert norm["family"] == "MILLER"
    assert norm["suffix"] == "JR"
    assert normalise(given_name="Robert", family_name="Miller", suffix="III")["suffix"] == "III"


def test_hyphenated_and_previous_surnames_become_tokens():
    norm = normalise(family_name="Garcia-Lopez", previous_family_names=["Whitfield"])
    assert norm["family_tokens"] == ["GARCIA", "LOPEZ", "WHITFIELD"]


@pytest.mark.parametrize(
    "raw", ["000-12-3456", "666-12-3456", "912-34-5678", "123-45-6789", "111-11-1111", "123-00-4567", "078-05-1120"]
)
def test_invalid_and_placeholder_ssns_are_missing(raw):
    assert normalise_ssn(raw) == ("", "")


def test_another_countrys_national_identifier_is_kept_as_given():
    assert normalise_ssn("5304218") == ("5304218", "4218")
    assert normalise_ssn("12345") == ("", "")


def test_valid_ssn_keeps_digits_and_last_four():
    assert normalise_ssn("521-43-8876") == ("521438876", "8876")
    assert normalise_ssn("xxx-xx-8876") == ("", "8876")


def test_phones_become_e164():
    assert normalise_phone("(503) 555-0142") == "+15035550142"
    assert normalise_phone("not a phone") == ""


def test_street_lines_are_standardised():
    assert normalise_street("418 alder creek road apartment 2") == normalise_street("418 Alder Creek Rd Apt 2")


STREET_LINES = [
    "418 Alder Creek Rd", "0123 main st", "100 N Main St Apt B", "12 St", "7 Rd", "1 rosetta village",
    "10 Downing", "99999 Ocean Blvd", "120 W 45TH ST", "5 1/2 Elm St", "123 main st #4", "00 main st",
    "  42   Wallaby Way ", "1 ST", "2 AVE", "3 HWY 101", "500 Unit Rd", "600 UN A", "8 North", "9 N",
    "13 Calle Ñandú", "14 Straße", "15 \u0663 st", "16 - Main St", "17 & 18 Main", "19 Main St.",
    "20 Main St, Apt 3", "21 Apt", "22 Suite 100 Main", "1000 BROADWAY", "1010 BROADWAY APT 1010",
    "3 rosetta village", "407 goldsmith street", "41 kenneth close", "2 3rd ave", "205 RR 1", "PO Box 12",
    "12 Main St Apt 34", "Apt 34 12 Main St", "Apt 12 12 Main St", "12 34 Main St", "12 34 St", "100 Main St Apt 10",
    "0 Main St Apt 00", "00 Main St Apt 00", "7 Oak Ave Unit 7 Fl 2", "1 2 3 4 5 6 7 8 9 10 Main St", "12 Main St 34B",
    "12 Main St # 4", "PO Box 34 RR 12", "Suite 200 500 Main", "12 Main St Apt 34-B",
]  # fmt: skip


def test_a_street_line_standardised_through_its_shape_is_what_scourgify_gives_the_line_itself():
    import random

    from matching.normalize import _standard_street

    rng = random.Random(8)  # noqa: S311 - synthetic test values
    lines = STREET_LINES + [f"{rng.randint(1, 99999):0{rng.choice([1, 6])}d} {rest}" for rest in (
        "Alder Creek Rd", "n main street apt 4", "rosetta village", "kenneth close", "Calle Ñandú", "UN A",
        "W Broadway", "Unit Rd", "St", "north", "Oak St Apt {}", "Apt {} Oak St", "Hwy {} Apt {}", "{} St",
    ) for _ in range(12)]  # fmt: skip
    lines = [line.format(*(rng.randint(1, 999) for _ in range(2))) for line in lines]
    _standard_street.cache_clear()
    assert [normalise_street(line) for line in lines] == [_standard_street(line) for line in lines]
    _standard_street.cache_clear()
    assert normalise_street("418 Alder Creek Rd") == "418 ALDER CREEK RD"
    assert normalise_street("529 Alder Creek Rd") == "529 ALDER CREEK RD"
    assert _standard_street.cache_info().misses == 1, "the houses of a street are parsed once"
    assert normalise_street("418 Alder Creek Rd Apt 27") == "418 ALDER CREEK RD APT 27"
    assert normalise_street("529 alder creek road apt 31") == "529 ALDER CREEK RD APT 31"
    assert _standard_street.cache_info().misses == 3, "and the apartments of a house number's length"


def test_streets_worked_out_ahead_are_taken_as_known_within_their_block_only():
    from matching.normalize import _standard_street, prepared_streets, standardise_streets, streets_to_parse

    lines = ["418 Alder Creek Rd", "529 Alder Creek Rd", "12 Oak St", "Rosetta Village", "", "418 Alder Creek Rd"]
    assert streets_to_parse(lines) == ["11 Oak St", "111 Alder Creek Rd", "Rosetta Village"]
    standard = standardise_streets(streets_to_parse(lines))
    _standard_street.cache_clear()
    with prepared_streets(standard):
        assert [normalise_street(line) for line in lines] == [
            "418 ALDER CREEK RD", "529 ALDER CREEK RD", "12 OAK ST", "ROSETTA VILLAGE", "", "418 ALDER CREEK RD"
        ]  # fmt: skip
        assert _standard_street.cache_info().misses == 1, "only the empty line, which is never prepared"
    with prepared_streets({"111 Alder Creek Rd": "111 ALDER CRK ROAD"}):
        assert normalise_street("418 Alder Creek Rd") == "418 ALDER CRK ROAD"
    assert normalise_street("418 Alder Creek Rd") == "418 ALDER CREEK RD"


def test_nicknames_relate_directly_not_through_a_third_name():
    assert "william" in nickname_group("BILL")
    assert "robert" not in nickname_group("WILLIAM")


def test_birth_date_and_email():
    norm = normalise(birth_date=date(1990, 1, 2), email=" Pat@Example.ORG ")
    assert norm["birth_date"] == "19900102"
    assert norm["email"] == "pat@example.org"
