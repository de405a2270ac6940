"""The built-in kinds, their options and descriptions; importing this package registers them.

Only the declarations live here: the work is in `analyze.py` and `normalize.py`, imported when a task
first runs, so that validating a task's options does not load numpy, scipy or PyAV.
"""

from tasks_app.audio.registry import Option, Processor, deferred, register

OUTPUT_FORMATS = ("mp3", "opus", "m4a", "flac", "wav")

ANALYZE = register(
    Processor(
        kind="analyze",
        run=deferred("tasks_app.audio.processors.analyze:run"),
        options={
            "silence_threshold_db": Option(
                "number", -50.0, -120.0, 0.0, help="Level (dBFS RMS over 10 ms) below which audio counts as silence."
            ),
            "silence_min_duration": Option(
                "number", 0.5, 0.05, 60.0, help="Shortest silence, in seconds, that is reported."
            ),
            "samples_per_pixel": Option(
                "integer",
                None,
                1,
                10_000_000,
                help="Waveform resolution; by default chosen so it has at most 4000 points, never more than 500000.",
            ),
            "clip_threshold": Option(
                "number",
                0.999,
                0.5,
                1.0,
                help="Sample magnitude (1.0 = full scale) at or above which a sample counts as clipped.",
            ),
        },
        description="Measure loudness (EBU R128), true peak, RMS, silence and clipping; draw a waveform.",
    )
)

NORMALIZE = register(
    Processor(
        kind="normalize",
        run=deferred("tasks_app.audio.processors.normalize:run"),
        options={
            "target_lufs": Option("number", -16.0, -70.0, -5.0, help="Integrated loudness to reach, in LUFS."),
            "true_peak_ceiling": Option("number", -1.0, -9.0, 0.0, help="Highest allowed true peak, in dBTP."),
            "output_format": Option(
                "string", "mp3", choices=OUTPUT_FORMATS, help="Codec/container of the output file."
            ),
            "bit_rate": Option(
                "integer",
                None,
                32,
                320,
                help="Lossy bit rate in kbit/s (default: mp3 192, m4a 192, opus 128); lossless ignores it.",
            ),
        },
        description="Normalise loudness to a target (EBU R128 measurement) under a true-peak ceiling, then encode.",
    )
)
