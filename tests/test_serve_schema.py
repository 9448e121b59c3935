"""The API fuzzed from its own /openapi.json by schemathesis: every answer is below 500 and matches the schema
the server publishes, for values nobody here chose. A fixed seed and a bounded number of examples keep it
repeatable and short."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.api import load

pytest.importorskip("fastapi", reason="charrnn serve needs the [serve] extra (FastAPI, uvicorn)")
schemathesis = pytest.importorskip("schemathesis", reason="the [dev] extra installs schemathesis")
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from charrnn.serving import app as serve  # noqa: E402
from charrnn.serving.limits import ServerLimits  # noqa: E402


@pytest.fixture(scope="module")
def live_schema(tiny_run):
    """The schema of a live server on a loopback port, with limits small enough that any request ends soon."""
    models = [(load(tiny_run), tiny_run)]
    app = serve.build_models_app(models, ServerLimits(max_length=200, max_concurrent=4, max_body_bytes=20_000))
    with serve.background(app) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


@pytest.mark.parametrize("mode", ["positive", "negative"])
@given(data=st.data())
@settings(max_examples=60, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_below_500_and_matches_the_published_schema(live_schema, mode, data):
    """Positive cases are what the schema allows; negative ones break it, and must get a documented 4xx.
    A schema-valid text may still hold characters the model never saw, which get 422, so schema-valid
    requests are not required to succeed."""
    case = data.draw(live_schema.as_strategy(schemathesis.GenerationMode(mode)))
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
