#!/usr/bin/env python3
"""`./run demo`: the main job, as `suspendos demo` runs it from an installed package."""
import sys

from suspendos.demo import main

sys.exit(main())
