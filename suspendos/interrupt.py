"""SIGTERM and SIGHUP end a run the way Ctrl-C does.

`timeout`, `kill` and systemd stop a program with SIGTERM, a closed terminal sends SIGHUP;
Python's default for both is to die on the spot, with no `finally` run: QEMU (in a session
of its own) would run on, temp folders would stay. The handler raises `Terminated`, a
KeyboardInterrupt, so every path that already cleans up after Ctrl-C (context managers,
`finally`, asyncio's cancelling of a run's tasks) cleans up after these signals too.
"""
import asyncio
import signal
import threading

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


_task = None         # the asyncio task that drives QEMU (guard_task), if one runs


def guard_task(task):
    """Called by the task that drives a QEMU machine (QemuMachine.start). A signal that
    arrives while its event loop runs cancels that task instead of raising wherever the
    loop happens to be — inside select(), or in a step of the QMP client's own reader task,
    which would leave the loop with QMP half torn down. The task's `finally` blocks then
    stop QEMU with the loop whole, and asyncio.run raises CancelledError, which the CLI
    reports as the signal (`signal_received`)."""
    global _task
    _task = task


def _loop_task():
    if _task is None or _task.done():
        return None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _task if running is _task.get_loop() else None


def _on_signal(signum, frame):
    global _received
    if _received is not None:
        # Already tearing down: a second SIGTERM (a process group's, or `timeout`'s after the
        # child's own) must not cut short the cleanup the first one started.
        return
    _received = signum
    task = _loop_task()
    if task is None:
        raise Terminated(signum)
    task.cancel()
    task.get_loop().call_soon_threadsafe(lambda: None)    # wake a select() PEP 475 resumes


def install():
    """Once, in the main thread, at the start of the CLI. A SIGHUP the user chose to ignore
    (`nohup`) stays ignored. Only the main thread may set handlers (a caller running the
    CLI in a thread keeps Python's defaults)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)


def received():
    """True once SIGTERM or SIGHUP has been taken: teardown should be quick, not graceful."""
    return _received is not None


def signal_received():
    """Terminated for the signal taken, or None."""
    return Terminated(_received) if _received is not None else None
