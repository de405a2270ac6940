"""Registry of audio processors ("kinds") and validation of their options.

The built-in kinds are declared in `tasks_app.audio.processors`, which the app's `ready()` imports;
this module imports no processor, so a processor module can import it without a cycle.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module

from tasks_app.audio.errors import OptionsError
from tasks_app.audio.progress import ProgressFn

__all__ = ["Option", "Processor", "ProgressFn", "get_processor", "processors", "register", "validate_options"]

OPTION_TYPES = ("number", "integer", "string", "boolean")
# What a processor runs: (path, options, progress, output_dir) -> a JSON-serialisable result.
Runner = Callable[[str, dict[str, object], ProgressFn, str], dict[str, object]]


@dataclass(frozen=True)
class Option:
    """Schema of one processor option; a default of None means "optional, decided automatically"."""

    type: str
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[object, ...] | None = None
    help: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-serialisable schema, e.g. for an API that lists processors."""
        return {
            "type": self.type,
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "choices": list(self.choices) if self.choices is not None else None,
            "help": self.help,
        }


@dataclass(frozen=True)
class Processor:
    """A kind of processing: `run(path, options, progress, output_dir)` returns a JSON-serialisable dict."""

    kind: str
    run: Runner
    options: dict[str, Option] = field(default_factory=dict)
    description: str = ""


def deferred(path: str) -> Runner:
    """The function at `path` ("module:function"), imported on its first call.

    Declaring a kind then costs nothing: validating options or listing kinds (the API, every
    management command) does not load the audio stack (numpy, scipy, PyAV) that running needs.
    """

    def run(source: str, options: dict[str, object], progress: ProgressFn, output_dir: str) -> dict[str, object]:
        module, _, name = path.partition(":")
        return getattr(import_module(module), name)(source, options, progress, output_dir)

    return run


_PROCESSORS: dict[str, Processor] = {}


def register(processor: Processor) -> Processor:
    """Add `processor` to the registry under its kind (replacing any earlier one)."""
    for name, option in processor.options.items():
        if option.type not in OPTION_TYPES:
            raise ValueError(f"option {name!r} of {processor.kind!r} has unknown type {option.type!r}")
    _PROCESSORS[processor.kind] = processor
    return processor


def get_processor(kind: str) -> Processor:
    """Return the processor registered for `kind`; KeyError if there is none."""
    return _PROCESSORS[kind]


def processors() -> list[Processor]:
    """All registered processors, ordered by kind."""
    return [_PROCESSORS[kind] for kind in sorted(_PROCESSORS)]


def _check_value(name: str, option: Option, value: object) -> object:
    if value is None:
        if option.default is None:
            return None
        raise OptionsError(name, "must not be null")
    if option.type == "boolean":
        if not isinstance(value, bool):
            raise OptionsError(name, "must be a boolean")
    elif option.type == "integer":
        # bool is an int subclass, and 3.0 from a JSON client is still the integer 3.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionsError(name, "must be an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise OptionsError(name, "must be an integer")
            value = int(value)
    elif option.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise OptionsError(name, "must be a number")
        value = float(value)
    elif option.type == "string" and not isinstance(value, str):
        raise OptionsError(name, "must be a string")
    if option.minimum is not None and value < option.minimum:  # type: ignore[operator]
        raise OptionsError(name, f"must be at least {option.minimum:g}")
    if option.maximum is not None and value > option.maximum:  # type: ignore[operator]
        raise OptionsError(name, f"must be at most {option.maximum:g}")
    if option.choices is not None and value not in option.choices:
        raise OptionsError(name, "must be one of " + ", ".join(str(c) for c in option.choices))
    return value


def validate_options(kind: str, options: dict[str, object] | None) -> dict[str, object]:
    """Return `options` checked against the kind's schema with defaults filled in; raise OptionsError."""
    schema = get_processor(kind).options
    options = options or {}
    if not isinstance(options, dict):
        raise OptionsError("options", "must be an object")
    for name in options:
        if name not in schema:
            raise OptionsError(name, f"unknown option for {kind}")
    return {name: _check_value(name, opt, options.get(name, opt.default)) for name, opt in schema.items()}
