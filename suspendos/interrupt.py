"""SIGTERM and SIGHUP end a run the way Ctrl-C does.

`timeout`, `kill` and systemd stop a program with SIGTERM, a closed terminal sends SIGHUP;
Python's default for both is to die on the spot, with no `finally` run: QEMU (in a session
of its own) would run on, temp folders would stay. The handler raises `Terminated`, a
KeyboardInterrupt, so every path that already cleans up after Ctrl-C (context managers,
`finally`, asyncio's cancelling of a run's tasks) cleans up after these signals too.
"""
import signal

SIGNALS = (signal.SIGTERM, signal.SIGHUP)

_received = None     # the first signal number taken, while its teardown runs


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; the program exits 128 + the signal number."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self):
        return signal.Signals(self.signum).name

    @property
    def exit_status(self):
        return 128 + self.signum


def _on_signal(signum, frame):
    global _received
    if _received is not None:
        # Already tearing down: a second SIGTERM (a process group's, or `timeout`'s after the
        # child's own) must not cut short the cleanup the first one started.
        return
    _received = signum
    raise Terminated(signum)


def install():
    """Once, in the main thread, at the start of the CLI. A SIGHUP the user chose to ignore
    (`nohup`) stays ignored."""
    for signum in SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)


def received():
    """True once SIGTERM or SIGHUP has been taken: teardown should be quick, not graceful."""
    return _received is not None
