"""Shaping processor results: warnings that say what was repaired or missed, and JSON-safe numbers."""

import math


def warning(code: str, message: str) -> dict[str, str]:
    """One entry of a result's `warnings` list: a machine-readable code and a sentence for people."""
    return {"code": code, "message": message}


def json_safe(result: dict[str, object]) -> dict[str, object]:
    """`result` with every NaN or infinity replaced by None, each replacement reported in `warnings`.

    The meters are built not to produce such values; this is the last line of defence, since JSON
    has no NaN and a client would choke on it.
    """
    replaced: list[str] = []

    def clean(value: object, where: str) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            replaced.append(where)
            return None
        if isinstance(value, dict):
            return {key: clean(item, f"{where}.{key}" if where else str(key)) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return value

    cleaned = clean(result, "")
    assert isinstance(cleaned, dict)
    if replaced:
        warnings = list(cleaned.get("warnings") or [])
        warnings.append(warning("non_finite_result", "Undefined values were reported as null: " + ", ".join(replaced)))
        cleaned["warnings"] = warnings
    return cleaned
