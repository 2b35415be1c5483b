"""Random and malformed requests to the Patient API never make the node fail (no 5xx)."""

import json

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from hie.fhir.patient_search import SEARCH_PARAMETERS
from tests.fhir.conftest import patient

pytestmark = pytest.mark.django_db
FUZZ = hypothesis_settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

text = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
patient_fields = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values | st.just([{"family": "Quintanilla", "given": ["Marisol"]}]),
        "gender": text | st.sampled_from(["male", "female", "other", "unknown"]),
        "birthDate": text | st.dates().map(str),
        "telecom": json_values,
        "address": json_values,
        "identifier": json_values,
        "active": json_values,
        "link": json_values,
    },
)


@pytest.fixture
def caller(make_member, get_token, settings):
    settings.FHIR_RATE_LIMIT = 0
    issued = make_member("Fuzzer")
    token = get_token(issued)["access_token"]
    system = issued.client.organization.identifier_system_uris[0]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_X_PURPOSE_OF_USE": "TREAT"}
    return system, headers


def test_search_parameters(client, caller):
    _, headers = caller

    @FUZZ
    @given(st.dictionaries(st.sampled_from([*SEARCH_PARAMETERS, "_count", "_offset"]) | text, text, max_size=4))
    @example({"_id": "\u00b9"})  # a superscript one: a digit to str.isdigit(), not to int()
    @example({"_count": "\u00b2"})
    def search(params):
        assert client.get("/fhir/Patient", params, **headers).status_code < 500

    search()


def test_feed_bodies(client, caller):
    system, headers = caller

    @FUZZ
    @given(patient_fields, st.sampled_from(["put", "post"]))
    def feed(fields, method):
        body = {**patient(system, "FUZZ-1"), **fields}
        send = getattr(client, method)
        url = f"/fhir/Patient?identifier={system}|FUZZ-1" if method == "put" else "/fhir/Patient"
        assert send(url, json.dumps(body), content_type="application/fhir+json", **headers).status_code < 500

    feed()


def test_match_and_raw_bodies(client, caller):
    _, headers = caller

    @FUZZ
    @given(json_values, patient_fields, st.binary(max_size=60))
    def post(anything, fields, raw):
        resource = {"resourceType": "Patient", **fields}
        parameters = [{"name": "resource", "resource": resource}, {"name": "count", "valueInteger": anything}]
        wrapped = {"resourceType": "Parameters", "parameter": parameters}
        for body in (json.dumps(wrapped), json.dumps(anything), raw):
            response = client.post("/fhir/Patient/$match", body, content_type="application/fhir+json", **headers)
            assert response.status_code < 500

    post()


def test_pix_parameters(client, caller):
    _, headers = caller

    names = st.sampled_from(["sourceIdentifier", "targetSystem"]) | text

    @FUZZ
    @given(st.lists(names, max_size=3), st.lists(text, max_size=3))
    def pix(names, values):
        params = list(zip(names, values, strict=False))
        assert client.get("/fhir/Patient/$ihe-pix", params, **headers).status_code < 500

    pix()
