"""Processor registry: lookup, listing and option validation."""

import pytest

from tasks_app.audio.errors import OptionsError
from tasks_app.audio.registry import Option, Processor, get_processor, processors, register, validate_options


def test_builtin_processors_are_registered() -> None:
    kinds = [p.kind for p in processors()]
    assert "analyze" in kinds and "normalize" in kinds
    assert get_processor("analyze").description
    assert callable(get_processor("normalize").run)


def test_unknown_kind_raises_key_error() -> None:
    with pytest.raises(KeyError):
        get_processor("transcode-to-midi")


def test_defaults_are_filled_in() -> None:
    assert validate_options("normalize", {}) == {
        "target_lufs": -16.0,
        "true_peak_ceiling": -1.0,
        "output_format": "mp3",
        "bit_rate": None,
    }
    options = validate_options("analyze", {"silence_threshold_db": -40})
    assert options["silence_threshold_db"] == -40.0
    assert options["silence_min_duration"] == 0.5


@pytest.mark.parametrize(
    ("kind", "options", "field", "reason"),
    [
        ("normalize", {"loudness": -14}, "loudness", "unknown"),
        ("normalize", {"target_lufs": "loud"}, "target_lufs", "number"),
        ("normalize", {"target_lufs": True}, "target_lufs", "number"),
        ("normalize", {"target_lufs": -80}, "target_lufs", "at least -70"),
        ("normalize", {"true_peak_ceiling": 1}, "true_peak_ceiling", "at most 0"),
        ("normalize", {"output_format": "ogg"}, "output_format", "one of"),
        ("normalize", {"bit_rate": 128.5}, "bit_rate", "integer"),
        ("normalize", {"bit_rate": 16}, "bit_rate", "at least 32"),
        ("analyze", {"silence_min_duration": 0}, "silence_min_duration", "at least"),
        ("analyze", {"samples_per_pixel": "auto"}, "samples_per_pixel", "integer"),
    ],
)
def test_invalid_options_name_the_field_and_reason(kind: str, options: dict, field: str, reason: str) -> None:
    with pytest.raises(OptionsError) as caught:
        validate_options(kind, options)
    assert caught.value.field == field
    assert reason in caught.value.message


def test_integral_float_is_accepted_for_integer_option() -> None:
    assert validate_options("normalize", {"bit_rate": 128.0})["bit_rate"] == 128


def test_register_adds_a_processor_with_its_schema() -> None:
    processor = Processor(
        kind="test-echo",
        run=lambda path, options, progress, output_dir: {"artifacts": {}, "options": options},
        options={"loud": Option("boolean", False, help="Shout.")},
        description="Echo options back.",
    )
    register(processor)
    try:
        assert get_processor("test-echo") is processor
        assert validate_options("test-echo", {"loud": True}) == {"loud": True}
        assert processor.options["loud"].as_dict()["type"] == "boolean"
        with pytest.raises(OptionsError):
            validate_options("test-echo", {"loud": "yes"})
    finally:
        from tasks_app.audio import registry

        registry._PROCESSORS.pop("test-echo", None)
