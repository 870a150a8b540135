"""The few libbpf calls the tc-BPF tunnel needs, through ctypes on Debian's `libbpf.so.1`.

Why ctypes on libbpf rather than `tc filter add ... bpf obj`: each `tc` call loads the object
again and gets maps of its own, so the encapsulating and decapsulating programs would not
share their peer tables. One `BpfObject` here is loaded once; its programs are attached to
as many devices as needed and all of them use the same maps (ENVIRONMENT.md, "tc BPF").
pyroute2 can attach an fd but loads no ELF, hence libbpf.

libbpf >= 1.0 semantics: calls return a negative errno (or NULL and set errno).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_TC_F_REPLACE = 1


class BpfError(RuntimeError):
    """libbpf refused (message names the call, the object or device, and the errno text)."""


class _TcHook(ctypes.Structure):
    # struct bpf_tc_hook { size_t sz; int ifindex; enum attach_point; __u32 parent; size_t :0; }
    _fields_ = [("sz", ctypes.c_size_t), ("ifindex", ctypes.c_int), ("attach_point", ctypes.c_int),
                ("parent", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class _TcOpts(ctypes.Structure):
    # struct bpf_tc_opts { size_t sz; int prog_fd; __u32 flags, prog_id, handle, priority; size_t :0; }
    _fields_ = [("sz", ctypes.c_size_t), ("prog_fd", ctypes.c_int), ("flags", ctypes.c_uint32),
                ("prog_id", ctypes.c_uint32), ("handle", ctypes.c_uint32),
                ("priority", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


_lib: ctypes.CDLL | None = None


def load_libbpf() -> ctypes.CDLL:
    """The process-wide handle on libbpf.so.1 with argument types declared.

    Raises BpfError if the library is missing (Debian package `libbpf1`, pulled in by iproute2).
    """
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise BpfError(f"libbpf: cannot load {name}: {exc} (install libbpf1)") from None
    vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for fn, res, args in (
            ("bpf_object__open_file", vp, [cp, vp]), ("bpf_object__load", ci, [vp]),
            ("bpf_object__close", None, [vp]),
            ("bpf_object__find_program_by_name", vp, [vp, cp]), ("bpf_program__fd", ci, [vp]),
            ("bpf_object__find_map_by_name", vp, [vp, cp]), ("bpf_map__fd", ci, [vp]),
            ("bpf_map_update_elem", ci, [ci, vp, vp, ctypes.c_uint64]),
            ("bpf_map_lookup_elem", ci, [ci, vp, vp]), ("bpf_map_delete_elem", ci, [ci, vp]),
            ("bpf_tc_hook_create", ci, [ctypes.POINTER(_TcHook)]),
            ("bpf_tc_attach", ci, [ctypes.POINTER(_TcHook), ctypes.POINTER(_TcOpts)]),
            ("bpf_tc_detach", ci, [ctypes.POINTER(_TcHook), ctypes.POINTER(_TcOpts)])):
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    _lib = lib
    return lib


def _err(rc: int, what: str) -> BpfError:
    code = -rc if rc < 0 else ctypes.get_errno()
    return BpfError(f"{what}: {os.strerror(code)} (errno {code})")


class BpfObject:
    """One loaded BPF ELF object: its programs and maps by name.

    `path`: the compiled object (e.g. ipip_tc.bpf.o). Loading needs CAP_BPF or CAP_SYS_ADMIN;
    attaching to tc needs CAP_NET_ADMIN in the device's namespace. Raises BpfError.
    """

    def __init__(self, path: str | Path) -> None:
        self.lib = load_libbpf()
        self.path = str(path)
        ctypes.set_errno(0)
        obj = self.lib.bpf_object__open_file(self.path.encode(), None)
        if not obj:
            raise _err(0, f"bpf_object__open_file {self.path}")
        rc = self.lib.bpf_object__load(obj)
        if rc:
            self.lib.bpf_object__close(obj)
            raise _err(rc, f"bpf_object__load {self.path}")
        self._obj = obj

    def prog_fd(self, name: str) -> int:
        prog = self.lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise BpfError(f"{self.path}: no program {name!r}")
        return self.lib.bpf_program__fd(prog)

    def map_fd(self, name: str) -> int:
        m = self.lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise BpfError(f"{self.path}: no map {name!r}")
        return self.lib.bpf_map__fd(m)

    # ---- maps: key and value are ctypes objects of the map's exact sizes ----------------
    def update(self, map_name: str, key: ctypes._SimpleCData | ctypes.Structure | ctypes.Array,
               value: ctypes.Structure | ctypes._SimpleCData) -> None:
        rc = self.lib.bpf_map_update_elem(self.map_fd(map_name), ctypes.byref(key),
                                          ctypes.byref(value), 0)
        if rc:
            raise _err(rc, f"update of map {map_name}")

    def lookup(self, map_name: str, key, value_type: type):
        """The value for `key` as `value_type`, or None if absent."""
        out = value_type()
        rc = self.lib.bpf_map_lookup_elem(self.map_fd(map_name), ctypes.byref(key),
                                          ctypes.byref(out))
        return out if rc == 0 else None

    def delete(self, map_name: str, key) -> None:
        self.lib.bpf_map_delete_elem(self.map_fd(map_name), ctypes.byref(key))

    # ---- tc ------------------------------------------------------------------------------
    def tc_attach(self, prog: str, ifindex: int, point: int, *, handle: int, priority: int) -> None:
        """Attach program `prog` in direct-action mode at clsact `point` of `ifindex`,
        replacing a filter with the same handle/priority (a crashed predecessor's)."""
        hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=point)
        rc = self.lib.bpf_tc_hook_create(ctypes.byref(hook))
        if rc and rc != -17:  # EEXIST: the clsact qdisc is already there
            raise _err(rc, f"clsact qdisc on ifindex {ifindex}")
        opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), prog_fd=self.prog_fd(prog),
                       flags=BPF_TC_F_REPLACE, handle=handle, priority=priority)
        rc = self.lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
        if rc:
            raise _err(rc, f"attach {prog} to ifindex {ifindex}")

    def tc_detach(self, ifindex: int, point: int, *, handle: int, priority: int) -> None:
        """Remove our filter (by handle/priority); other filters and the qdisc stay."""
        hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=point)
        opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), handle=handle, priority=priority)
        self.lib.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))

    def close(self) -> None:
        """Drop our references; attached filters keep their programs (and maps) alive."""
        if self._obj:
            self.lib.bpf_object__close(self._obj)
            self._obj = None
