# The code_python runner: started as `python3 -I -S -B -X utf8 -c <this>` by the Rust node.
# Reads {code, state, input, inputs, modules, result_fd} as JSON on stdin, installs an audit
# hook (defence in depth; the OS limits set before exec are the boundary), runs the user's code
# compiled as `<code>` and writes one JSON object to fd `result_fd`:
#   {"ok": true, "result": ...} or {"ok": false, "kind": ..., "type": ..., "message": ..., "line": n}
import sys
import json
import os

_req = json.loads(sys.stdin.buffer.read().decode("utf-8"))
_out = open(_req["result_fd"], "w", encoding="utf-8")
_allowed = frozenset(_req["modules"])
_denied = frozenset(["ctypes", "_ctypes", "cffi", "_cffi_backend"])
_work = os.path.realpath(os.getcwd())
_roots = tuple(os.path.realpath(p) for p in sys.path if p and os.path.isabs(p))
_violations = []
_getframe = sys._getframe
_realpath = os.path.realpath
_fspath = os.fspath
_modules = sys.modules


class SandboxViolation(BaseException):
    """A blocked operation (not an Exception, so `except Exception` does not swallow it)."""


def _inside(path, roots):
    return any(path == r or path.startswith(r + os.sep) for r in roots)


def _block(what):
    _violations.append(what)
    raise SandboxViolation("blocked by the sandbox: " + what)


def _stdlib_caller():
    """Whether the import was started by a loaded stdlib module's own code (not the user's)."""
    f = _getframe(3)  # 0 this, 1 _check, 2 _hook, 3 the importer
    while f is not None:
        co = f.f_code
        fn = co.co_filename
        if fn.startswith("<frozen importlib"):
            f = f.f_back
            continue
        if fn == "<code>" or fn.startswith("<"):
            return False
        name = f.f_globals.get("__name__")
        mod = _modules.get(name) if isinstance(name, str) else None
        if mod is None or getattr(mod, "__dict__", None) is not f.f_globals:
            return False
        mfile = getattr(mod, "__file__", None)
        return (
            isinstance(mfile, str)
            and _realpath(mfile) == _realpath(fn)
            and _inside(_realpath(fn), _roots)
        )
    return False


_PROCESS = frozenset([
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
    "os.startfile", "webbrowser.open",
])
_FS_WRITE = frozenset([
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod",
    "os.chown", "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.lchmod",
    "os.setxattr", "os.removexattr", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    "shutil.copymode", "shutil.copystat", "shutil.chown", "shutil.make_archive",
    "shutil.unpack_archive", "os.mkfifo", "os.mknod",
])
_busy = [False]


def _hook(event, args):
    if _busy[0]:
        return
    _busy[0] = True
    try:
        _check(event, args)
    finally:
        _busy[0] = False


def _check(event, args):
    if event == "open":
        path, mode, flags = args
        if path is None:
            return
        if isinstance(path, int):
            _block("open of file descriptor %d" % path)
        try:
            p = _fspath(path)
            if isinstance(p, bytes):
                p = p.decode("utf-8", "surrogateescape")
        except TypeError:
            _block("open of %r" % (path,))
        p = _realpath(os.path.join(_work, p))
        writing = (mode is not None and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        )
        if _inside(p, (_work,)):
            return
        if writing:
            _block("writing %s (only the work directory is writable)" % p)
        if not _inside(p, _roots):
            _block("reading %s (outside the work directory)" % p)
    elif event == "import":
        name = args[0]
        top = name.partition(".")[0]
        if top in _denied:
            _block("import " + name)
        # `_strptime` is imported by C code (datetime/time strptime), with no stdlib frame.
        if top in _allowed or top == "_strptime" or _stdlib_caller():
            return
        _block("import %s (not in the allowed modules; the operator adds modules with ORCHEO_PYTHON_MODULES)" % name)
    elif event in _PROCESS:
        _block(event + " (no processes)")
    elif event.startswith(("socket.", "ctypes.", "_ctypes.", "ssl.")):
        _block(event + " (no network or native code)")
    elif event in _FS_WRITE or event in ("os.chdir", "os.fchdir", "os.chroot"):
        _block(event)
    elif event in ("os.listdir", "os.scandir"):
        p = args[0]
        if isinstance(p, int):
            _block(event + " of a file descriptor")
        p = _realpath(os.path.join(_work, _fspath(p) if p is not None else "."))
        if not (_inside(p, (_work,)) or _inside(p, _roots)):
            _block("%s %s (outside the work directory)" % (event, p))
    elif event == "compile":
        fn = args[1]
        if isinstance(fn, bytes):
            fn = fn.decode("utf-8", "surrogateescape")
        if isinstance(fn, str) and not fn.startswith("<"):
            caller = _getframe(2).f_code.co_filename
            if not caller.startswith("<frozen importlib"):
                _block("compile with file name %s" % fn)
    elif event == "sys.addaudithook":
        _block("sys.addaudithook")


def _user_line(tb):
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<code>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _default(v):
    import decimal
    import datetime
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    raise TypeError("%s is not JSON serialisable" % type(v).__name__)


def _finish(obj):
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    _out.write(json.dumps(obj))
    _out.flush()
    os._exit(0)


def _fail(kind, e, line):
    _finish({"ok": False, "kind": kind, "type": type(e).__name__, "message": str(e), "line": line})


# Pre-load what the runner itself needs after the hook is installed.
import decimal  # noqa: E402,F401
import datetime  # noqa: E402,F401

_source = _req["code"]
_audit = _req.get("audit", True)  # only the node's own tests turn it off, to test the OS layer
_real_import = __import__


def _user_import(name, globals=None, locals=None, fromlist=(), level=0):
    """The user's `import`: only allowed modules, even when already loaded."""
    top = name.partition(".")[0]
    if name == "_strptime" and level == 0:  # imported by C code (datetime/time strptime)
        return _real_import(name, globals, locals, fromlist, level)
    if _audit and (level != 0 or top in _denied or top not in _allowed):
        _block("import %s (not in the allowed modules; the operator adds modules with ORCHEO_PYTHON_MODULES)" % name)
    return _real_import(name, globals, locals, fromlist, level)


_builtins = dict(__builtins__.__dict__)
_builtins["__import__"] = _user_import
_g = {
    "__name__": "__orcheo__",
    "__builtins__": _builtins,
    "state": _req["state"],
    "input": _req["input"],
    "inputs": _req["inputs"],
    "item": _req.get("item"),
    "index": _req.get("index"),
}
del _req
if _audit:
    sys.addaudithook(_hook)
try:
    _code = compile(_source, "<code>", "exec")
except SyntaxError as e:
    _fail("code", e.__class__("%s" % e.msg), e.lineno)
except BaseException as e:
    _fail("code", e, None)
try:
    exec(_code, _g)
except SandboxViolation as e:
    _fail("sandbox", e, _user_line(e.__traceback__))
except MemoryError as e:
    _fail("memory", MemoryError("out of memory"), _user_line(e.__traceback__))
except BaseException as e:
    if _violations:
        _fail("sandbox", SandboxViolation("blocked by the sandbox: " + _violations[0]), _user_line(e.__traceback__))
    _fail("code", e, _user_line(e.__traceback__))
if _violations:
    _fail("sandbox", SandboxViolation("blocked by the sandbox: " + _violations[0]), None)
try:
    _text = json.dumps(_g.get("result"), default=_default, allow_nan=False)
except BaseException as e:
    _fail("code", TypeError("`result` is not JSON: %s" % e), None)
_busy[0] = True
_out.write('{"ok": true, "result": ' + _text + "}")
_out.flush()
try:
    sys.stdout.flush()
    sys.stderr.flush()
except BaseException:
    pass
os._exit(0)
