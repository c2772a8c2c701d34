#!/usr/bin/env python3
"""`./run demo`: the main job, as `suspendos demo` runs it from an installed package (through
the CLI's main, for its SIGTERM/SIGHUP handler and one-line errors)."""
import sys

from suspendos.cli import main

sys.exit(main(["demo", *sys.argv[1:]]))
