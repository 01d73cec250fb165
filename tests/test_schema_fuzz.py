"""Schemathesis over the whole OpenAPI schema: no 5xx, every response matches its schema."""

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import create_app
from tests.helpers import settings as app_settings

app = create_app(app_settings(models=("lenet", "vgg16"), max_upload_bytes=64 * 1024))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# Valid and invalid requests alike: invalid ones must get a documented 4xx, never a 5xx.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# Schemathesis runs the app's lifespan itself and keeps it up between requests.


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # Random bytes fit "format: binary" but are no image: a 422 for them is right, so the check
    # that schema-valid data must be accepted does not apply; every other check does.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
