"""Running a containerlib command line with a signal sent to it at a chosen moment.

:data:`PRELUDE` is Python source to put before a script that runs the command in its own
process (``python -c PRELUDE+SCRIPT ARGS...``). It defines there:

- ``after(owner, name, then)``: ``owner.name`` (a function or method) calls ``then()``
  once it has returned, to send a signal the moment a container runs, before the
  command is back in its own code (where it used to install its handlers too late);
- ``wait_for_file(path)``: until ``path`` exists (a container's shell says its trap is
  set);
- ``signal_in_a_thread(go=-1)``: starts a thread that, once it has read a byte from the
  descriptor ``go`` (if one is given) and the main thread blocks in a wait (select, poll,
  waitpid...), sends SIGTERM to itself. As with a signal that lands in a terminal relay's
  thread, or just before the main thread blocks, CPython runs the handler only in the
  main thread, between two bytecodes: a wait that does not watch the wakeup descriptor
  goes on until the container ends.
"""

from __future__ import annotations

__all__ = ["PRELUDE"]

PRELUDE = """
import os, signal, sys, threading, time
BLOCKING = {
    "x86_64": {7, 23, 61, 232, 247, 270, 271, 281},
    "aarch64": {22, 72, 73, 95, 260},
}[os.uname().machine]

def after(owner, name, then):
    original = getattr(owner, name)
    def patched(*args, **kwargs):
        result = original(*args, **kwargs)
        then()
        return result
    setattr(owner, name, patched)

def wait_for_file(path):
    while not os.path.exists(path):
        time.sleep(0.005)

def _blocked(tid):
    with open(f"/proc/self/task/{tid}/syscall") as f:
        number = f.read().split()[0]
    return number.isdigit() and int(number) in BLOCKING

def signal_in_a_thread(go=-1):
    main = threading.main_thread().native_id
    def run():
        if go >= 0:
            os.read(go, 1)
        while not _blocked(main):
            time.sleep(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    threading.Thread(target=run, daemon=True).start()
"""
