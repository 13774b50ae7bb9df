"""What the pages show of a model's parameters (gateway/web/view.py)."""

from __future__ import annotations

import pytest

from gateway.web.view import Param


@pytest.mark.parametrize(
    ("prop", "widget", "bounds"),
    [
        ({"type": "integer", "minimum": 64, "maximum": 2048}, "number", "64 to 2048"),
        ({"type": "number", "exclusiveMinimum": 0, "maximum": 20}, "number", "above 0, at most 20"),
        ({"type": "string", "enum": ["crop", "pad"]}, "select", "one of crop, pad"),
        ({"type": "string", "maxLength": 64}, "text", "at most 64 characters"),
        ({"type": "array", "items": {"type": "string"}, "maxItems": 8}, "lines", "at most 8 items"),
        ({"type": "boolean"}, "checkbox", ""),
        ({"type": "object"}, "textarea", ""),
    ],
)
def test_a_parameter_gets_a_widget_and_its_bounds_in_words(
    prop: dict[str, object], widget: str, bounds: str
) -> None:
    param = Param.from_schema("x", prop, required=False)
    assert param.widget == widget
    assert param.bounds == bounds


def test_prompts_get_a_text_area() -> None:
    assert Param.from_schema("negative_prompt", {"type": "string"}, False).widget == "textarea"


@pytest.mark.parametrize(
    ("default", "shown", "form"),
    [
        (None, "", ""),
        (7.0, "7.0", "7.0"),
        (False, "false", "false"),
        ([], "", ""),
        (["a"], "['a']", ""),
    ],
)
def test_defaults_are_shown_plainly(default: object, shown: str, form: str) -> None:
    param = Param.from_schema("x", {"type": "string", "default": default}, False)
    assert param.shown_default == shown
    assert param.form_value == form
