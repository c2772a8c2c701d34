"""The RSS limit to give a fuzzer started from the test process.

libFuzzer measures its peak RSS with getrusage(RUSAGE_SELF).ru_maxrss, and Linux carries a
process's peak RSS across fork and execve (getrusage(2): "preserved across execve"). After a
test that mapped a 3 GiB RAM dump, pytest's peak is several GB, and a fuzzer it starts would
report out-of-memory on its first input. The limit is therefore the inherited peak plus the
budget the harness really has, so a harness that grows by more than `budget_mb` still fails.
"""
import resource


def rss_limit_mb(budget_mb):
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024   # KiB -> MiB
    return inherited + budget_mb
