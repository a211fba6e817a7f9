"""A thin wrapper over the `adb` command line: find it, pick one device, push, run, read props."""

from __future__ import annotations

import shutil
import subprocess

from ef_keras.errors import EfKerasError

__all__ = ["AndroidError", "Adb", "find_adb"]


class AndroidError(EfKerasError):
    """A problem with adb, the device or the benchmark run (one-line message saying what to do)."""


def find_adb(adb: str | None = None) -> str:
    """The adb executable: `adb` if it is a path, else `adb`/"adb" looked up on PATH."""
    path = shutil.which(adb or "adb")
    if path is None:
        raise AndroidError(
            f"{adb or 'adb'} not found{' on PATH' if not adb or '/' not in adb else ''}: install the Android SDK "
            "platform-tools (e.g. `apt-get install adb`) and put adb on PATH, or pass --adb /path/to/adb")
    return path


class Adb:
    """One attached device, addressed through `adb -s SERIAL`."""

    def __init__(self, serial: str | None = None, adb: str | None = None, timeout: float = 600.0):
        self.adb = find_adb(adb)
        self.timeout = timeout
        self.serial = self._pick_device(serial)

    def _run(self, *args: str, check: bool = True, device: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.adb, *(("-s", self.serial) if device else ()), *args]
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace", timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise AndroidError(f"`{' '.join(cmd)}` did not finish in {self.timeout:.0f}s; check the device "
                               "(screen on, not throttled) or raise --timeout") from e
        if check and proc.returncode != 0:
            last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
            raise AndroidError(f"`adb {' '.join(args)}` failed (exit {proc.returncode}): {last}")
        return proc

    def _pick_device(self, serial: str | None) -> str:
        out = self._run("devices", device=False).stdout
        devices = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
                devices[parts[0]] = parts[1]
        ready = [s for s, state in devices.items() if state == "device"]
        if serial is not None:
            state = devices.get(serial)
            if state is None:
                raise AndroidError(f"device {serial!r} is not attached (adb devices lists "
                                   f"{', '.join(devices) or 'none'}); check the cable or the serial")
            if state != "device":
                raise AndroidError(f"device {serial!r} is {state}: accept the USB-debugging prompt on the phone "
                                   "(unauthorized) or reconnect it (offline)")
            return serial
        if not devices:
            raise AndroidError("no Android device attached (adb devices lists none): connect a phone with USB "
                               "debugging enabled and accept its prompt")
        if not ready:
            s, state = next(iter(devices.items()))
            raise AndroidError(f"device {s!r} is {state}: accept the USB-debugging prompt on the phone or reconnect it")
        if len(ready) > 1:
            raise AndroidError(f"{len(ready)} devices attached ({', '.join(ready)}); choose one with --serial")
        return ready[0]

    def shell(self, command: str) -> tuple[int, str]:
        """Runs `command` in the device shell; returns (exit status, stdout+stderr)."""
        proc = self._run("shell", command, check=False)
        return proc.returncode, proc.stdout

    def push(self, local: str, remote: str) -> None:
        """Pushes a file (only if it changed: `adb push --sync`)."""
        self._run("push", "--sync", local, remote)

    def getprop(self, name: str) -> str:
        return self.shell(f"getprop {name}")[1].strip()
