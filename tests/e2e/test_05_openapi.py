"""The OpenAPI document rvsd serves (control/openapi.json, compiled into the
binary) is a valid OpenAPI 3.1 document, checked with openapi-spec-validator
(a real validator: deploy/setup.sh installs it). No namespaces needed."""

import copy
import json
import pathlib
import unittest

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

DOC = pathlib.Path(__file__).resolve().parents[2] / "control" / "openapi.json"


class OpenApiDocument(unittest.TestCase):
    def setUp(self):
        self.doc = json.loads(DOC.read_text())

    def test_served_document_is_valid_openapi_3_1(self):
        self.assertEqual(self.doc["openapi"], "3.1.0")
        validate(self.doc)

    def test_validator_refuses_a_broken_document(self):
        # The check can fail: 3.1's `"type": [..., "null"]` under a 3.0 header is refused,
        # as is a response without its required description.
        as_30 = copy.deepcopy(self.doc)
        as_30["openapi"] = "3.0.3"
        with self.assertRaises(OpenAPIValidationError):
            validate(as_30)
        broken = copy.deepcopy(self.doc)
        path = next(iter(broken["paths"].values()))
        operation = next(v for k, v in path.items() if k in ("get", "put", "post", "delete"))
        next(iter(operation["responses"].values())).pop("description", None)
        with self.assertRaises(OpenAPIValidationError):
            validate(broken)


if __name__ == "__main__":
    unittest.main()
