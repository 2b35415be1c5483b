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


def test_nicknames_relate_directly_not_through_a_third_name():
    assert "william" in nickname_group("BILL")
    assert "robert" not in nickname_group("WILLIAM")


def test_birth_date_and_email():
    norm = normalise(birth_date=date(1990, 1, 2), email=" Pat@Example.ORG ")
    assert norm["birth_date"] == "19900102"
    assert norm["email"] == "pat@example.org"
