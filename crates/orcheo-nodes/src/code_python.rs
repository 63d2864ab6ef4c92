//! The Python code node (`code_python`): the user's code runs in a `python3 -I -S -B`
//! subprocess with a clean environment, an empty temporary working directory and JSON in and
//! out. The boundary is the operating system: rlimits (CPU, address space, processes, file
//! size, open files, no core files), a new session (a timeout kills the whole group), a new
//! user + network namespace when the kernel allows, and a seccomp filter refusing sockets,
//! new processes, `execve` after the interpreter's own and other dangerous calls. The runner's
//! audit hook (import allowlist, no writes outside the work dir, no processes, no sockets) is
//! defence in depth only. When the machine cannot install the filter, the node refuses to run
//! unless the operator opts out with `ORCHEO_PYTHON_UNSANDBOXED=1`.

use async_trait::async_trait;
use orcheo_core::node::{Level, Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::ffi::{c_char, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

/// Set to `1` to let the node run without OS isolation when the machine cannot provide it.
pub const UNSANDBOXED_ENV: &str = "ORCHEO_PYTHON_UNSANDBOXED";
/// Extra modules the user's code may import (comma list, added to the defaults).
pub const MODULES_ENV: &str = "ORCHEO_PYTHON_MODULES";
/// The interpreter to use (default `python3` from `PATH`).
pub const PYTHON_ENV: &str = "ORCHEO_PYTHON";

/// The modules user code may import by default.
pub const DEFAULT_MODULES: &[&str] = &[
    "json",
    "math",
    "re",
    "datetime",
    "decimal",
    "fractions",
    "statistics",
    "itertools",
    "functools",
    "collections",
    "string",
    "textwrap",
    "unicodedata",
    "random",
    "hashlib",
    "hmac",
    "base64",
    "uuid",
    "time",
    "typing",
    "dataclasses",
    "enum",
    "copy",
    "operator",
    "heapq",
    "bisect",
    "csv",
    "io",
];

const RUNNER: &str = include_str!("code_python_runner.py");
const MAX_TIMEOUT_MS: u64 = 300_000;
const MAX_MEMORY_MB: u64 = 4096;
const MIN_MEMORY_MB: u64 = 64;
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_OPEN_FILES: u64 = 64;
const MAX_RESULT_BYTES: u64 = 16 * 1024 * 1024;
const MAX_LOG_LINES: usize = 500;
const MAX_LOG_LINE: usize = 2000;

/// Runs Python code in a sandboxed subprocess.
pub struct CodePython;

/// Config of `code_python`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodePythonConfig {
    /// Python source run as a module body: it sees `state` (the run state), `input` (the run
    /// input), `inputs` (outputs of the nodes that activated this one, by node id), and in a
    /// map `item` and `index`, as plain values, and sets `result = ...` (JSON-serialisable;
    /// `Decimal` becomes a string). `return` is not available: assign `result`.
    pub code: String,
    /// Milliseconds before the run is killed (default 5000, at most 300000).
    #[serde(default = "five_seconds")]
    pub timeout_ms: u64,
    /// Address-space limit in MiB (default 256, 64 to 4096).
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
}

fn five_seconds() -> u64 {
    5000
}
fn default_memory() -> u64 {
    256
}

/// How the child is isolated on this machine (decided at first use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// New user + network namespace, rlimits and the seccomp filter.
    Namespaces,
    /// Rlimits and the seccomp filter (which refuses sockets and new processes).
    Seccomp,
    /// Rlimits and the audit hook only (the operator opted out with `ORCHEO_PYTHON_UNSANDBOXED=1`).
    Unsandboxed,
}

impl Isolation {
    /// A short name for logs and docs.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Namespaces => "user+network namespace, seccomp, rlimits",
            Isolation::Seccomp => "seccomp, rlimits",
            Isolation::Unsandboxed => "rlimits and audit hook only (ORCHEO_PYTHON_UNSANDBOXED=1)",
        }
    }
}

/// The interpreter and isolation this process uses, found once.
struct Setup {
    python: PathBuf,
    isolation: Isolation,
    modules: Vec<String>,
}

static SETUP: OnceCell<Result<Arc<Setup>, String>> = OnceCell::const_new();

/// The isolation the node uses on this machine (probing at first call), or why it refuses.
pub async fn isolation() -> Result<Isolation, String> {
    setup().await.map(|s| s.isolation)
}

async fn setup() -> Result<Arc<Setup>, String> {
    SETUP.get_or_init(probe).await.clone()
}

fn modules() -> Vec<String> {
    let mut m: Vec<String> = DEFAULT_MODULES.iter().map(|s| s.to_string()).collect();
    if let Ok(extra) = std::env::var(MODULES_ENV) {
        for name in extra.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !m.iter().any(|x| x == name) {
                m.push(name.to_string());
            }
        }
    }
    m
}

async fn probe() -> Result<Arc<Setup>, String> {
    let python = find_python().await?;
    let modules = modules();
    let mut why = Vec::new();
    for isolation in [Isolation::Namespaces, Isolation::Seccomp] {
        let s = Setup {
            python: python.clone(),
            isolation,
            modules: modules.clone(),
        };
        let req = json!({ "code": "result = 1", "state": {}, "input": {}, "inputs": {} });
        match execute(&s, req, 10_000, 256).await {
            Ok(ex) if ex.result == Ok(json!(1)) => {
                tracing::info!(isolation = isolation.name(), python = %python.display(), "code_python sandbox");
                return Ok(Arc::new(s));
            }
            Ok(ex) => why.push(format!(
                "{}: the trial run failed: {:?} {}",
                isolation.name(),
                ex.result,
                ex.stderr_tail
            )),
            Err(e) => why.push(format!("{}: {}", isolation.name(), e.message)),
        }
    }
    if std::env::var(UNSANDBOXED_ENV).is_ok_and(|v| v == "1") {
        tracing::warn!("code_python runs WITHOUT OS isolation ({UNSANDBOXED_ENV}=1): {why:?}");
        return Ok(Arc::new(Setup {
            python,
            isolation: Isolation::Unsandboxed,
            modules,
        }));
    }
    Err(format!(
        "this machine cannot isolate Python code (no seccomp filter and no user+network namespace: {}); \
         the node refuses to run. Allow it to run without OS isolation (only rlimits and the audit hook) \
         by setting {UNSANDBOXED_ENV}=1 on the server, at your own risk",
        why.join("; ")
    ))
}

/// The real interpreter's absolute path (a pyenv shim is a script that would need to exec).
async fn find_python() -> Result<PathBuf, String> {
    let py = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into());
    let out = tokio::process::Command::new(&py)
        .args(["-I", "-S", "-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            format!("cannot start `{py}` ({e}); install Python 3 or set {PYTHON_ENV} to its path")
        })?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !path.is_absolute() {
        return Err(format!(
            "`{py}` did not report its executable path ({}); set {PYTHON_ENV} to the interpreter",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(path)
}

/// What one subprocess run gave.
struct Executed {
    result: Result<Value, NodeError>,
    logs: Vec<(Level, String)>,
    stderr_tail: String,
}

/// A failure to start or drive the subprocess (not the user's error).
struct SpawnError {
    message: String,
}

/// The argv and environment for `execve`, built before `fork` (the child must not allocate).
struct ExecImage {
    _strings: Vec<CString>,
    path: *const c_char,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

// SAFETY: the pointers point into `_strings`, owned by the same value and never mutated.
unsafe impl Send for ExecImage {}
// SAFETY: as above; only read.
unsafe impl Sync for ExecImage {}

impl ExecImage {
    fn new(python: &std::path::Path) -> Result<Self, String> {
        let c = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in `{s}`"));
        let shown = python.to_string_lossy();
        let path = c(&shown)?;
        // argv[0] is the full path: Python finds its prefix (stdlib) from it.
        let args = [&*shown, "-I", "-S", "-B", "-X", "utf8", "-c", RUNNER];
        let env = ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"];
        let mut strings = vec![path];
        for a in args.iter().chain(env.iter()) {
            strings.push(c(a)?);
        }
        let path = strings[0].as_ptr();
        let mut argv: Vec<*const c_char> =
            strings[1..=args.len()].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = strings[args.len() + 1..]
            .iter()
            .map(|s| s.as_ptr())
            .collect();
        envp.push(std::ptr::null());
        Ok(Self {
            _strings: strings,
            path,
            argv,
            envp,
        })
    }
}

/// A pipe whose ends are close-on-exec (the child clears the flag on the write end).
fn result_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs the runner once under `setup`'s isolation.
async fn execute(
    setup: &Setup,
    mut req: Value,
    timeout_ms: u64,
    memory_mb: u64,
) -> Result<Executed, SpawnError> {
    let err = |m: String| SpawnError { message: m };
    let work = TempDir::new().map_err(|e| err(format!("cannot create a work directory: {e}")))?;
    let image = Arc::new(ExecImage::new(&setup.python).map_err(err)?);
    let (read_end, write_end) =
        result_pipe().map_err(|e| err(format!("cannot create a pipe: {e}")))?;
    let result_fd = write_end.as_raw_fd();
    if let Some(o) = req.as_object_mut() {
        o.insert("result_fd".into(), json!(result_fd));
        o.insert("modules".into(), json!(setup.modules));
    }
    let stdin_bytes = serde_json::to_vec(&req).map_err(|e| err(format!("encoding: {e}")))?;
    let limits = Limits {
        cpu_secs: timeout_ms.div_ceil(1000) + 1,
        memory_bytes: memory_mb * 1024 * 1024,
    };
    let isolation = setup.isolation;

    let mut cmd = tokio::process::Command::new(&setup.python);
    cmd.env_clear()
        .current_dir(work.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let img = image.clone();
    // SAFETY: the closure runs in the forked child before exec; it only makes
    // async-signal-safe system calls and does not allocate (the filter is built on the stack,
    // the argv/envp were built before fork).
    unsafe {
        cmd.pre_exec(move || child_setup(&img, result_fd, limits, isolation));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot start the sandboxed interpreter: {e}")))?;
    drop(write_end);
    let pid = child.id().map(|p| p as i32);
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut result_file = tokio::fs::File::from_std(std::fs::File::from(read_end));

    let feed = async move {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&stdin_bytes).await;
            let _ = s.shutdown().await;
        }
    };
    let read_result = async {
        let mut buf: Vec<u8> = Vec::new();
        let _ = (&mut result_file)
            .take(MAX_RESULT_BYTES)
            .read_to_end(&mut buf)
            .await;
        buf
    };
    let work_fut = async {
        let (_, out, errs, res, status) = tokio::join!(
            feed,
            read_lines(stdout),
            read_lines(stderr),
            read_result,
            child.wait()
        );
        (out, errs, res, status)
    };
    let outcome = tokio::time::timeout(Duration::from_millis(timeout_ms), work_fut).await;
    let kill_group = || {
        if let Some(pid) = pid {
            // SAFETY: the child called setsid, so its pid is its process group id.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
    };
    let Ok((out, errs, res, status)) = outcome else {
        // Only while the child is not reaped: its pid (= group id) cannot have been reused.
        if matches!(child.try_wait(), Ok(None)) {
            kill_group();
        }
        let _ = child.wait().await;
        return Ok(Executed {
            result: Err(NodeError::new(
                "timeout",
                format!("the code ran longer than {timeout_ms} ms and was stopped"),
            )),
            logs: Vec::new(),
            stderr_tail: String::new(),
        });
    };
    let status = status.map_err(|e| err(format!("waiting for the interpreter: {e}")))?;
    let mut logs: Vec<(Level, String)> = out.0.into_iter().map(|l| (Level::Info, l)).collect();
    logs.extend(errs.0.into_iter().map(|l| (Level::Warn, l)));
    let stderr_tail = errs.1;
    let result = if let Ok(v) = serde_json::from_slice::<Value>(&res) {
        if v["ok"] == json!(true) {
            Ok(v["result"].clone())
        } else {
            let kind = v["kind"].as_str().unwrap_or("code").to_string();
            let ty = v["type"].as_str().unwrap_or("Error");
            let msg = v["message"].as_str().unwrap_or("");
            let line = v["line"]
                .as_u64()
                .map(|n| format!(" (line {n})"))
                .unwrap_or_default();
            let text = if msg.is_empty() {
                format!("{ty}{line}")
            } else {
                format!("{ty}: {msg}{line}")
            };
            Err(NodeError::new(kind, text).with_details(v))
        }
    } else if let Some(sig) = status.signal() {
        if sig == libc::SIGXCPU || sig == libc::SIGKILL {
            Err(NodeError::new(
                "timeout",
                format!("the code used more CPU time than {timeout_ms} ms allows and was stopped"),
            ))
        } else if sig == libc::SIGSYS {
            Err(NodeError::new(
                "sandbox",
                "the code made a system call the sandbox forbids and was killed",
            ))
        } else if sig == libc::SIGSEGV || sig == libc::SIGABRT || sig == libc::SIGBUS {
            Err(NodeError::new(
                "memory",
                format!("the interpreter crashed (signal {sig}), most likely out of memory: raise memory_mb (now {memory_mb})"),
            ))
        } else {
            Err(NodeError::new(
                "code",
                format!("the interpreter was killed by signal {sig}"),
            ))
        }
    } else if stderr_tail.contains("MemoryError") {
        Err(NodeError::new(
            "memory",
            format!("out of memory within memory_mb = {memory_mb}"),
        ))
    } else {
        Err(NodeError::new(
            "code",
            format!(
                "the interpreter exited ({status}) without a result: {}",
                stderr_tail.trim()
            ),
        ))
    };
    drop(work);
    Ok(Executed {
        result,
        logs,
        stderr_tail,
    })
}

/// Reads a stream into lines (at most `MAX_LOG_LINES`, each cut at `MAX_LOG_LINE` bytes),
/// draining the rest; also returns the last 4 KiB of text.
async fn read_lines<R: AsyncRead + Unpin>(r: Option<R>) -> (Vec<String>, String) {
    let Some(mut r) = r else {
        return (Vec::new(), String::new());
    };
    let mut lines = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    let push = |cur: &mut Vec<u8>, lines: &mut Vec<String>, dropped: &mut usize| {
        if lines.len() < MAX_LOG_LINES {
            lines.push(String::from_utf8_lossy(cur).into_owned());
        } else {
            *dropped += 1;
        }
        cur.clear();
    };
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 8192 {
            tail.drain(..tail.len() - 4096);
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                push(&mut cur, &mut lines, &mut dropped);
            } else if cur.len() < MAX_LOG_LINE {
                cur.push(b);
            }
        }
    }
    if !cur.is_empty() {
        push(&mut cur, &mut lines, &mut dropped);
    }
    if dropped > 0 {
        lines.push(format!("... {dropped} more lines not shown"));
    }
    (lines, String::from_utf8_lossy(&tail).into_owned())
}

/// Resource limits applied in the child.
#[derive(Clone, Copy)]
struct Limits {
    cpu_secs: u64,
    memory_bytes: u64,
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: plain system call with a valid pointer.
    if unsafe { libc::setrlimit(resource, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// In the forked child: new session, rlimits, namespaces, seccomp, then exec the interpreter.
fn child_setup(
    img: &ExecImage,
    result_fd: RawFd,
    limits: Limits,
    isolation: Isolation,
) -> std::io::Result<()> {
    let last = std::io::Error::last_os_error;
    // SAFETY (whole function): async-signal-safe system calls on valid arguments.
    unsafe {
        if libc::setsid() < 0 {
            return Err(last());
        }
        if libc::fcntl(result_fd, libc::F_SETFD, 0) != 0 {
            return Err(last());
        }
        if isolation == Isolation::Namespaces
            && libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0
        {
            return Err(last());
        }
    }
    set_limit(libc::RLIMIT_CPU, limits.cpu_secs, limits.cpu_secs + 1)?;
    set_limit(libc::RLIMIT_AS, limits.memory_bytes, limits.memory_bytes)?;
    set_limit(libc::RLIMIT_FSIZE, MAX_FILE_BYTES, MAX_FILE_BYTES)?;
    set_limit(libc::RLIMIT_NOFILE, MAX_OPEN_FILES, MAX_OPEN_FILES)?;
    set_limit(libc::RLIMIT_CORE, 0, 0)?;
    set_limit(libc::RLIMIT_NPROC, 0, 0)?;
    if isolation != Isolation::Unsandboxed {
        // SAFETY: getpid cannot fail; the filter lives on this stack frame until exec.
        let filter = seccomp::Filter::build(unsafe { libc::getpid() } as u32, img.path as u64);
        filter.install()?;
    }
    // SAFETY: the pointers are valid NUL-terminated strings and NULL-terminated arrays.
    unsafe {
        libc::execve(img.path, img.argv.as_ptr(), img.envp.as_ptr());
    }
    Err(last())
}

/// A hand-written seccomp BPF filter (no dependency: the program is ~40 instructions and must
/// be built in the forked child without allocating, with the child's pid and the address of
/// the interpreter path baked in).
mod seccomp {
    use libc::{sock_filter, sock_fprog};

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;

    const LD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const ARG0_LO: u32 = 16;
    const ARG0_HI: u32 = 20;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
    }

    /// Calls refused with EPERM outright.
    const DENY: &[libc::c_long] = &[
        #[cfg(target_arch = "x86_64")]
        libc::SYS_fork,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_vfork,
        libc::SYS_execveat,
        libc::SYS_tkill,
        libc::SYS_pidfd_send_signal,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_io_uring_setup,
        libc::SYS_bpf,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_socketpair,
    ];

    /// A filter program on the stack.
    pub struct Filter {
        prog: [sock_filter; 128],
        len: usize,
    }

    impl Filter {
        fn push(&mut self, code: u16, k: u32, jt: u8, jf: u8) {
            if self.len < self.prog.len() {
                self.prog[self.len] = sock_filter { code, jt, jf, k };
                self.len += 1;
            }
        }

        /// The program: right architecture only; sockets refused (EACCES); fork, vfork,
        /// clone without CLONE_THREAD, clone3 (ENOSYS so libc falls back to clone for
        /// threads) and execve other than of `exec_path` refused; signals only to itself;
        /// namespaces, mounts, ptrace, io_uring, bpf, modules and the like refused.
        pub fn build(pid: u32, exec_path: u64) -> Filter {
            let mut f = Filter {
                prog: [sock_filter {
                    code: 0,
                    jt: 0,
                    jf: 0,
                    k: 0,
                }; 128],
                len: 0,
            };
            f.push(LD, ARCH, 0, 0);
            f.push(JEQ, AUDIT_ARCH, 1, 0);
            f.push(RET, KILL, 0, 0);
            f.push(LD, NR, 0, 0);
            #[cfg(target_arch = "x86_64")]
            {
                // x32 system calls (bit 30) are not expected from a 64-bit interpreter.
                f.push(JSET, 0x4000_0000, 0, 1);
                f.push(RET, KILL, 0, 0);
            }
            f.push(JEQ, libc::SYS_socket as u32, 0, 1);
            f.push(RET, errno(libc::EACCES), 0, 0);
            for &nr in DENY {
                f.push(JEQ, nr as u32, 0, 1);
                f.push(RET, errno(libc::EPERM), 0, 0);
            }
            f.push(JEQ, libc::SYS_clone3 as u32, 0, 1);
            f.push(RET, errno(libc::ENOSYS), 0, 0);
            // clone: threads only (then back to the syscall number for the checks below).
            f.push(JEQ, libc::SYS_clone as u32, 0, 4);
            f.push(LD, ARG0_LO, 0, 0);
            f.push(JSET, libc::CLONE_THREAD as u32, 0, 1);
            f.push(RET, ALLOW, 0, 0);
            f.push(RET, errno(libc::EPERM), 0, 0);
            // execve: only of the interpreter path at its pre-fork address (our own exec).
            f.push(JEQ, libc::SYS_execve as u32, 0, 6);
            f.push(LD, ARG0_LO, 0, 0);
            f.push(JEQ, exec_path as u32, 0, 2);
            f.push(LD, ARG0_HI, 0, 0);
            f.push(JEQ, (exec_path >> 32) as u32, 1, 0);
            f.push(RET, errno(libc::EPERM), 0, 0);
            f.push(RET, ALLOW, 0, 0);
            // kill: itself or its own group (0; it is a session leader) only.
            f.push(JEQ, libc::SYS_kill as u32, 0, 5);
            f.push(LD, ARG0_LO, 0, 0);
            f.push(JEQ, pid, 2, 0);
            f.push(JEQ, 0, 1, 0);
            f.push(RET, errno(libc::EPERM), 0, 0);
            f.push(RET, ALLOW, 0, 0);
            // tgkill: its own threads only.
            f.push(JEQ, libc::SYS_tgkill as u32, 0, 4);
            f.push(LD, ARG0_LO, 0, 0);
            f.push(JEQ, pid, 1, 0);
            f.push(RET, errno(libc::EPERM), 0, 0);
            f.push(RET, ALLOW, 0, 0);
            f.push(RET, ALLOW, 0, 0);
            f
        }

        /// Instructions used.
        #[cfg(test)]
        pub fn len(&self) -> usize {
            self.len
        }

        /// Sets no_new_privs and installs the filter for this process.
        pub fn install(&self) -> std::io::Result<()> {
            let prog = sock_fprog {
                len: self.len as u16,
                filter: self.prog.as_ptr() as *mut sock_filter,
            };
            // SAFETY: plain system calls; `prog` points to `self.prog`, alive for the call.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &prog as *const sock_fprog,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        }
    }
}

/// A fresh empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "orcheo-py-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        Ok(Self(dir))
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[async_trait]
impl Node for CodePython {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<CodePythonConfig, Value>(
            "code_python",
            "Python Code",
            "code",
            "Runs Python code in a sandboxed python3 subprocess (no network, no processes, no files outside an empty work dir, CPU/memory limits); the code reads `state`, `input` and `inputs` and sets `result`; print() goes to the run log.",
        )
        .icon("code")
        .example(
            "Sum line items exactly",
            json!({ "code": "from decimal import Decimal\nresult = str(sum(Decimal(str(i['price'])) * i['qty'] for i in state['items']))" }),
        )
        .example(
            "Parse and log",
            json!({ "code": "import re\nemails = re.findall(r'[\\w.]+@[\\w.]+', input['text'])\nprint(f'found {len(emails)}')\nresult = {'emails': emails}", "timeout_ms": 2000 }),
        )
        .raw(&["code"])
    }

    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: CodePythonConfig = ctx.config_as()?;
        let node = &ctx.node_id;
        if c.timeout_ms == 0 || c.timeout_ms > MAX_TIMEOUT_MS {
            return Err(NodeError::config(format!(
                "code_python node `{node}`: timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
            )));
        }
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&c.memory_mb) {
            return Err(NodeError::config(format!(
                "code_python node `{node}`: memory_mb must be between {MIN_MEMORY_MB} and {MAX_MEMORY_MB}"
            )));
        }
        let setup = setup()
            .await
            .map_err(|e| NodeError::new("sandbox", format!("code_python node `{node}`: {e}")))?;
        let inputs: Map<String, Value> = ctx
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect();
        let input = ctx.scope.input.as_deref().cloned().unwrap_or(Value::Null);
        let item = ctx.scope.item.as_ref().map(|(_, v)| (**v).clone());
        let req = json!({ "code": c.code, "state": ctx.state(), "input": input, "inputs": inputs,
                          "item": item, "index": ctx.scope.index });
        let run = execute(&setup, req, c.timeout_ms, c.memory_mb);
        let ex = tokio::select! {
            r = run => r,
            _ = ctx.cancel.cancelled() => return Err(NodeError::new("cancelled", "the run was cancelled")),
        }
        .map_err(|e| NodeError::new("sandbox", format!("code_python node `{node}`: {}", e.message)))?;
        for (level, line) in ex.logs {
            ctx.log(level, line);
        }
        match ex.result {
            Ok(v) => Ok(NodeOutput::output(v).into()),
            Err(mut e) => {
                e.message = format!("code_python node `{node}`: {}", e.message);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OS layer alone (audit hook and import allowlist off, `os`/`socket` importable):
    /// sockets, new processes, exec and signals to others must still fail. Skipped (loudly)
    /// only when the machine offers no isolation and the node therefore refuses.
    #[tokio::test]
    async fn os_layer_holds_without_the_audit_hook() {
        let setup = match setup().await {
            Ok(s) => s,
            Err(e) => {
                assert!(e.contains(UNSANDBOXED_ENV), "{e}");
                eprintln!("no isolation on this machine; the node refuses: {e}");
                return;
            }
        };
        eprintln!("isolation: {}", setup.isolation.name());
        if setup.isolation == Isolation::Unsandboxed {
            eprintln!("{UNSANDBOXED_ENV}=1: no OS layer to test");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let mut modules = setup.modules.clone();
        modules.extend(["os", "socket", "subprocess", "sys"].map(String::from));
        // The mode the probe chose, and the seccomp-only fallback (used where namespaces are not).
        let mut modes = vec![setup.isolation];
        if setup.isolation == Isolation::Namespaces {
            modes.push(Isolation::Seccomp);
        }
        for isolation in modes {
            let bare = Setup {
                python: setup.python.clone(),
                isolation,
                modules: modules.clone(),
            };
            check_os_layer(&bare, &listener, port).await;
        }
    }

    async fn check_os_layer(bare: &Setup, listener: &std::net::TcpListener, port: u16) {
        let code = format!(
            r#"import os, socket, subprocess, sys
out = {{}}
def attempt(name, f):
    try:
        f()
        out[name] = "allowed"
    except OSError as e:
        out[name] = e.errno
attempt("socket", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1))
attempt("unix", lambda: socket.socket(socket.AF_UNIX))
attempt("fork", lambda: os.fork() or None)
attempt("spawn", lambda: subprocess.run(["/bin/true"]))
attempt("exec", lambda: os.execv("/bin/true", ["true"]))
attempt("kill", lambda: os.kill(1, 0))
result = out
"#
        );
        let req = json!({ "code": code, "state": {}, "input": {}, "inputs": {}, "audit": false });
        let ex = execute(bare, req, 10_000, 256)
            .await
            .map_err(|e| e.message)
            .expect("runs");
        let v = ex.result.expect("the code completes");
        let denied = |k: &str, errnos: &[i32]| {
            let got = v[k].as_i64().unwrap_or(-1) as i32;
            assert!(errnos.contains(&got), "{}: {k}: {v}", bare.isolation.name());
        };
        denied("socket", &[libc::EACCES]);
        denied("unix", &[libc::EACCES]);
        denied("fork", &[libc::EPERM, libc::ENOSYS]);
        denied("spawn", &[libc::EPERM, libc::ENOSYS]);
        denied("exec", &[libc::EPERM]);
        denied("kill", &[libc::EPERM]);
        std::thread::sleep(Duration::from_millis(50));
        assert!(listener.accept().is_err(), "a connection arrived");
    }

    #[test]
    fn the_filter_fits() {
        let f = seccomp::Filter::build(1, 0x1234_5678_9abc);
        assert!(f.len() < 128);
    }
}
