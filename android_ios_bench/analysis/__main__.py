"""Entry point of `python -m android_ios_bench.analysis` (see android_ios_bench.analysis.cli)."""

from android_ios_bench.analysis.cli import run

run()
