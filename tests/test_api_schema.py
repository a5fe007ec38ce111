"""A bounded schemathesis run against the live server's own OpenAPI document: generated requests
to every operation, with a valid key, both valid ones and ones that break the schema (wrong types,
values out of range, missing fields), must get no 5xx and no answer that breaks the documented
schema."""

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from atelier.server.config import ServerSettings  # noqa: E402
from tests.api_server import start_server  # noqa: E402

# per operation and mode: about 30 seconds in all on two cores; derandomized, so CI runs the same cases
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}



@pytest.fixture(scope="module")
def live(pipe, tmp_path_factory):

    settings = ServerSettings(data=tmp_path_factory.mktemp("schema"), threads=1, rate_limit=100_000,
                              daily_quota=1_000_000)
    server = start_server(settings, pipe)
    yield server, server.add_user("fuzz")
    server.stop()


@pytest.mark.slow
def test_no_server_errors_and_no_answers_outside_the_schema(live):
    server, key = live
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        for mode, examples in EXAMPLES.items():
            @given(case=operation.as_strategy(mode))
            @settings(max_examples=examples, deadline=None, phases=[Phase.generate], database=None,
                      derandomize=True, suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(base_url=server.url, headers={"Authorization": f"Bearer {key}"},
                                       checks=[not_a_server_error, response_schema_conformance])

            try:
                check()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise           # negative: nothing this operation takes can break its schema (/healthz)
