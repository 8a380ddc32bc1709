"""Form handling: turn posted fields into schema objects with per-field messages."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from puffin.core.changes import take_pending

Model = TypeVar("Model", bound=BaseModel)

_FRIENDLY = {
    "missing": "This field is required.",
    "string_pattern_mismatch": "Use only the allowed characters.",
    "uuid_parsing": "Choose a valid entry.",
    "int_parsing": "Enter a whole number.",
    "enum": "Choose one of the listed values.",
    "datetime_from_date_parsing": "Enter a date and time.",
    "datetime_parsing": "Enter a date and time.",
}


def field_errors(error: ValidationError) -> dict[str, str]:
    """Return one readable message per field of a validation error."""
    messages: dict[str, str] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "form"
        text = _FRIENDLY.get(item["type"]) or str(item["msg"]).removeprefix("Value error, ")
        messages.setdefault(name, text)
    return messages


def parse_form(
    model: type[Model], form: dict[str, str], *, optional_blank: bool = True, **extra: Any
) -> tuple[Model | None, dict[str, str]]:
    """Validate the form's fields for `model`; blank optional fields count as not given."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in form:
            continue
        raw = form[name]
        if optional_blank and raw.strip() == "" and not info.is_required():
            continue
        values[name] = raw
    values.update(extra)
    try:
        return model.model_validate(values), {}
    except ValidationError as error:
        return None, field_errors(error)


def discard_changes(session: Session) -> None:
    """Undo a failed change: roll back and forget audit notes that would describe it."""
    session.rollback()
    take_pending(session)
