"""The template sandbox: imports an assignment's libraries once, then forks each student's worker.

A sandbox that imports Keras spends about 2.3 of its 3 core-seconds of start-up on that import,
for every student. A template is started like a sandbox (bubblewrap run as root, the same root
layout and environment), imports what the assignment is graded with, never loads a notebook,
and forks one worker per student. Each fork gives itself, before any student code runs, what
bubblewrap and the privilege drop give a sandbox started on its own:

- new pid, mount, network, ipc and uts (and cgroup) namespaces; the worker is pid 2 of its pid
  namespace, under a small pid 1 that reaps and reports its exit status, so the worker and
  everything it starts die together when the checking process kills that pid 1;
- its own size-capped tmpfs on the scratch directory, ``/tmp`` and ``/dev/shm``, its own
  ``/proc`` and its own ``/dev/pts``: nothing the template or a classmate wrote is visible;
- uid and gid 65534 with no supplementary groups, then (where the host allows it) a user
  namespace of its own, so that the process limit counts this worker's processes only; then
  every capability dropped (bounding, permitted, effective, inheritable and ambient sets),
  ``no_new_privs``, and the resource limits; it checks all of this in ``/proc/self/status``
  and exits before reading a request when anything differs;
- every file descriptor closed but its own three pipes.

The template runs as root inside its bubblewrap sandbox (no network, the read-only root) and
runs only this module: it reads requests from the checking process on a Unix socket (its
stdin), never from a worker. It is single-threaded when it forks (TensorFlow starts no thread
on import), so the fork copies no lock held by another thread.

Requests (one datagram each, the checking process's only), each with a number its reply
repeats: ``fork N LIMITS`` with four file descriptors (the worker's stdin, stdout and stderr,
and a pipe that gets its exit status), the limits as JSON; ``kill N PID``. Replies: ``N pid
PID``, ``N ok`` or ``N error WHY``. The exit status, written
when the worker's pid 1 has been reaped, is the worker's exit code, or 128 + N for a signal N
(as bubblewrap reports it).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

NOBODY = 65534

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1

REQUEST_BYTES = 4096
"""Largest request datagram."""

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A fork could not give itself the sandbox's confinement."""


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(number)} (errno {number})")


def _unshare(flags: int, what: str) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({what})")


def _mount(source: str, target: str, kind: str | None, flags: int, data: str | None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), kind.encode() if kind else None,
                       ctypes.c_ulong(flags), data.encode() if data else None),
           f"mount {kind or source} on {target}")


def _prctl(option: int, arg: int, what: str, arg3: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0), what)


# ---------------------------------------------------------------------------------------------
# The worker's pid 1 and the worker


def _confine_namespaces(settings: dict[str, Any]) -> None:
    """In the fork that is pid 1 of a new pid namespace: new mount, network, ipc and uts
    namespaces, fresh tmpfs mounts, /proc and /dev/pts, the loopback interface up."""
    _unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS, "mount, net, ipc, uts")
    _libc.unshare(ctypes.c_int(CLONE_NEWCGROUP))  # where the kernel has them, as bwrap tries
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    tmpfs = MS_NOSUID | MS_NODEV
    for target, size in settings["private_tmpfs"]:  # /tmp and /dev/shm, as in the layout
        _mount("sandbox-private", str(target), "tmpfs", tmpfs, f"size={int(size)},mode=1777")
    # The scratch directory may lie under /tmp: its folders are made again in the new one,
    # world-searchable, as bubblewrap makes them for a sandbox.
    scratch = Path(settings["scratch"])
    for folder in (*reversed(scratch.parents), scratch):
        if not folder.is_dir():
            folder.mkdir()
            os.chmod(folder, 0o755)
    _mount("sandbox-scratch", str(scratch), "tmpfs", tmpfs,
           f"size={int(settings['scratch_bytes'])},mode=0777")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    if os.path.isdir("/dev/pts"):
        _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=620")
    name = b"sandbox"
    _check(_libc.sethostname(name, len(name)), "sethostname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _drop_bounding_set(last_cap: int) -> None:
    for cap in range(last_cap + 1):
        _prctl(PR_CAPBSET_DROP, cap, f"drop capability {cap} from the bounding set")


def _drop_capabilities() -> None:
    """Empty the ambient, effective, permitted and inheritable sets (allowed without any
    capability: a process may always lower its own)."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "clear the ambient capabilities")
    header = ctypes.create_string_buffer(struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(24)  # two (effective, permitted, inheritable) triples
    _check(_libc.capset(header, data), "capset")


def _become_nobody(settings: dict[str, Any]) -> None:
    """uid/gid 65534, a user namespace where the host allows one, no capabilities,
    no_new_privs, the resource limits."""
    last_cap = int(settings["last_cap"])
    _drop_bounding_set(last_cap)  # needs CAP_SETPCAP: before the uid change
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    if settings["own_user_namespace"]:
        # A new user namespace comes with every capability in it, its bounding set full
        # again: both dropped right after.
        _unshare(CLONE_NEWUSER, "user")
        _drop_bounding_set(last_cap)
    _drop_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
    # An exec'd program is dumpable again after the uid change; so is this one, so that it
    # may read its own /proc/self as a started sandbox can.
    _prctl(PR_SET_DUMPABLE, 1, "dumpable")
    for limit, value in ((resource.RLIMIT_AS, settings["memory_bytes"]),
                         (resource.RLIMIT_NPROC, settings["processes"]),
                         (resource.RLIMIT_FSIZE, settings["file_bytes"]),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (int(value), int(value)))


def confinement_problems() -> list[str]:
    """What differs from a confined worker in this process's ``/proc/self/status`` (empty when
    nothing does)."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    problems = []
    for key in ("Uid", "Gid"):
        if fields.get(key) != [str(NOBODY)] * 4:
            problems.append(f"{key} {fields.get(key)}")
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int((fields.get(key) or ["1"])[0], 16) != 0:
            problems.append(f"{key} {fields.get(key)}")
    if fields.get("NoNewPrivs") != ["1"]:
        problems.append(f"NoNewPrivs {fields.get('NoNewPrivs')}")
    if os.getpid() != 2:
        problems.append(f"pid {os.getpid()}")
    return problems


def _worker(fds: list[int], settings: dict[str, Any]) -> None:
    """The student's worker: its pipes, the privilege drop, then the requests."""
    from grader.sandbox import fonts, worker

    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    os.closerange(3, 2**20)  # its signal handling was reset by its pid 1, before the fork
    scratch = Path(settings["scratch"])
    os.chdir(scratch)
    _become_nobody(settings)
    if problems := confinement_problems():
        os.write(2, f"grader: the forked worker is not confined: {problems}\n".encode())
        os._exit(125)
    # The folders that the template's imports made in its own scratch, made again here.
    for module, variable in (("matplotlib", "MPLCONFIGDIR"), ("keras", "KERAS_HOME")):
        if module in sys.modules and (folder := os.environ.get(variable)):
            os.makedirs(folder, exist_ok=True)
    fonts.install(settings.get("font_list") or "")
    requests, replies = worker._take_protocol_streams()
    worker.serve(scratch, requests, replies)


def _pid1(fds: list[int], settings: dict[str, Any]) -> None:
    """pid 1 of the worker's namespaces: confine them, fork the worker, reap until it ends,
    then exit with its status (128 + N for a signal N). Runs no student code."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "parent-death signal")
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _confine_namespaces(settings)
    child = os.fork()
    if child == 0:
        try:
            _worker(fds, settings)
        except BaseException as exc:  # noqa: BLE001 - reported on the worker's stderr
            os.write(2, f"grader: the forked worker failed: {exc!r}\n".encode(errors="replace"))
            os._exit(125)
        os._exit(0)
    os.closerange(0, 2**20)
    _drop_bounding_set(int(settings["last_cap"]))
    _drop_capabilities()
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(125)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


# ---------------------------------------------------------------------------------------------
# The template


class Template:
    def __init__(self, control: socket.socket, settings: dict[str, Any]) -> None:
        self.control = control
        self.settings = settings
        self.children: dict[int, int] = {}
        """The live pid 1 of each worker, with the write end of its status pipe."""
        self.own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def fork(self, fds: list[int], limits: dict[str, Any]) -> int:
        settings = {**self.settings, **limits}
        # A fork copies only the calling thread: any lock another thread held would stay
        # held in the worker. The imports start no thread; refuse if one ever does.
        threads = len(os.listdir("/proc/self/task"))
        if threads != 1:
            raise SetupError(f"the template runs {threads} threads; it forks only when it "
                             "runs one")
        sys.stdout.flush()
        sys.stderr.flush()
        _unshare(CLONE_NEWPID, "pid")  # for the next child only: set back below
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    _pid1(fds, settings)
                except BaseException as exc:  # noqa: BLE001 - reported on the worker's stderr
                    os.write(fds[2], f"grader: the forked sandbox could not be set up: "
                                     f"{exc!r}\n".encode(errors="replace"))
                os._exit(125)
        finally:
            _check(_libc.setns(self.own_pid_namespace, CLONE_NEWPID), "setns(pid)")
        return pid

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = self.children.pop(pid, None)
            if fd is not None:
                code = os.waitstatus_to_exitcode(status)
                try:
                    os.write(fd, f"{128 - code if code < 0 else code}\n".encode())
                except OSError:
                    pass
                os.close(fd)

    def handle(self, message: bytes, fds: list[int]) -> bytes:
        """The reply to one request, which starts with its kind and a number that the reply
        repeats (``fork N LIMITS`` with four descriptors, ``kill N PID``)."""
        kind, _, rest = message.partition(b" ")
        number, _, argument = rest.partition(b" ")
        if not number.isdigit():
            number = b"0"
        if kind == b"fork" and len(fds) == 4:
            try:
                limits = json.loads(argument)
                pid = self.fork(fds, {key: int(limits[key]) for key in
                                      ("memory_bytes", "processes", "file_bytes",
                                       "scratch_bytes")})
            except (SetupError, OSError, ValueError, KeyError, TypeError) as exc:
                os.close(fds[3])
                return number + f" error {exc}".encode()[:1000]
            finally:
                for fd in fds[:3]:
                    os.close(fd)
            self.children[pid] = fds[3]
            return number + f" pid {pid}".encode()
        for fd in fds:
            os.close(fd)
        if kind == b"kill":
            try:
                pid = int(argument)
            except ValueError:
                return number + b" error not a pid"
            if pid in self.children:  # never a pid this template did not fork and reap
                os.kill(pid, signal.SIGKILL)
            return number + b" ok"
        return number + b" error unknown request"

    def serve(self) -> None:
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.control.send(b"ready")
        while True:
            # An interrupted select or recv is retried by Python itself (PEP 475).
            ready, _, _ = select.select([self.control.fileno(), wake_read], [], [])
            if wake_read in ready:
                try:
                    while os.read(wake_read, 4096):
                        pass
                except BlockingIOError:
                    pass
            self.reap()
            if self.control.fileno() in ready:
                message, fds, _, _ = socket.recv_fds(self.control, REQUEST_BYTES, 4)
                if not message:
                    return  # the checking process is gone: bubblewrap ends everything
                self.control.send(self.handle(message, fds))


def main() -> None:
    """``python -I -m grader.sandbox.template SCRATCH SETTINGS``, its stdin a Unix socket."""
    from grader.sandbox import fonts, worker

    scratch = Path(sys.argv[1])
    settings = json.loads(sys.argv[2])
    settings["scratch"] = str(scratch)
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as last_cap:
        settings["last_cap"] = int(last_cap.read())
    # Each worker writes the font list again into its own (new) scratch.
    settings["font_list"] = os.environ.get(fonts.VARIABLE, "")
    control = socket.socket(fileno=os.dup(0))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # nothing reads the template's stdout
    os.close(devnull)
    os.chdir(scratch)
    fonts.install()
    worker._preload()
    Template(control, settings).serve()


if __name__ == "__main__":
    main()
