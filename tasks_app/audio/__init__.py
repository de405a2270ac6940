"""Audio processing pipeline: probe, decode, measure and transform audio files without Django.

Entry points: `probe.probe(path)` validates and describes a file; `registry.get_processor(kind)`
returns a processor whose `run(path, options, progress, output_dir)` writes artifacts into
`output_dir` and returns a JSON-serialisable result; `registry.validate_options(kind, options)`
checks options first. Errors are in `errors` (AudioError, OptionsError, Cancelled).
"""
