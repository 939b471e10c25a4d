"""``python -m fastws.loadgen URI ...``: the same as ``fastws bench URI ...``."""

import argparse
import sys

from .._allocator import retain_freed_memory
from .cli import add_arguments, run

retain_freed_memory()

parser = argparse.ArgumentParser(prog="fastws bench")
add_arguments(parser)
sys.exit(run(parser.parse_args()))
