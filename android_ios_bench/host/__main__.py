"""Entry point of `python -m android_ios_bench.host` (see android_ios_bench.host.cli)."""

from android_ios_bench.host.cli import run

run()
