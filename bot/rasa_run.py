"""Rasa's command line with one measured fix: ``python -m bot.rasa_run run ...``.

``RasaStack`` starts Rasa through this module instead of ``python -m rasa``; the arguments
and behaviour are Rasa's own (``rasa.__main__.main``).

The fix: Rasa validates every answer of the action server with ``jsonschema.validate``
(``RemoteAction._validate_action_result``), and ``jsonschema.validate`` first checks the
*schema itself* against its meta-schema (``check_schema``) before it checks the answer. The
schema is the same constant every time; with jsonschema 4.17's draft 2020-12 meta-schema that
check took 20 % of the Rasa process's CPU time in a profile of the gateway benchmark
(py-spy; ``bench/results/profile.txt``). ``validate`` below does the same validation of the
instance, raising the same best-matching error, but checks each distinct schema once per
process. Forked Sanic workers (``TRIAGE_RASA_WORKERS``) inherit it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import jsonschema

_original_validate = jsonschema.validate
_validators: dict[tuple[str, Any], Any] = {}
_lock = threading.Lock()


def validate(instance: Any, schema: Any, cls: Any = None, *args: Any, **kwargs: Any) -> None:
    """``jsonschema.validate`` with the schema check and the validator kept per schema."""
    if args or kwargs:
        return _original_validate(instance, schema, cls, *args, **kwargs)
    try:
        key = (json.dumps(schema, sort_keys=True), cls)
    except (TypeError, ValueError):  # not plain JSON: no cache, Rasa's own path
        return _original_validate(instance, schema, cls)
    validator = _validators.get(key)
    if validator is None:
        klass = cls or jsonschema.validators.validator_for(schema)
        klass.check_schema(schema)  # raises SchemaError, as jsonschema.validate does
        validator = klass(schema)
        with _lock:
            _validators[key] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise error
    return None


def install() -> None:
    """Put the cached ``validate`` where Rasa imports it from (``from jsonschema import validate``)."""
    jsonschema.validate = validate


def main() -> None:
    install()
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
