"""Request bodies parsed with pydantic; failures answer 422 validation_error."""

from __future__ import annotations

from typing import TypeVar

import pydantic
from flask import request

from pay_api.errors import UnsupportedMediaType, ValidationError

Model = TypeVar("Model", bound=pydantic.BaseModel)


def parse_body(model: type[Model]) -> Model:
    if request.content_length and request.mimetype and not request.is_json:
        raise UnsupportedMediaType()  # a form or text body: say what to send instead
    try:
        data = request.get_json(silent=True, force=True)  # no Content-Type: read it as JSON
    except RecursionError:  # nested deeper than the parser goes: not a body of ours
        data = None
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        raise ValidationError(details=details) from exc
