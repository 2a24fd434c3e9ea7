//! The appliance under test: the QEMU test image of `image/` booted from the
//! host, with the handles a black-box test needs.
//!
//! - [`Arch`]: the image is built and booted for x86_64 (`-M pc`) or arm64
//!   (`qemu-system-aarch64 -M virt`, the appliance's real architecture, with
//!   a cross-built gateway and Debian's arm64 packages). A test takes the
//!   architecture as a parameter; [`on_each_arch!`](crate::on_each_arch)
//!   makes one `#[test]` of it per architecture.
//! - [`ensure_image`] runs `image/build.sh --arch ARCH` once per test
//!   process and architecture (the script itself is idempotent and takes a
//!   lock, so parallel test binaries are safe).
//! - [`Guest::boot`] runs `image/boot.sh`: QEMU under software emulation (KVM
//!   is not usable on the test machines), the status page forwarded to a free
//!   host port, the RNode link and a debug shell on virtio-serial ports.
//! - The RNode link is the guest's `/dev/virtio-ports/rnode0`, a tty. On the
//!   host it is either a Unix socket QEMU listens on ([`RnodeHost::Socket`],
//!   for a test that speaks KISS itself) or a serial device QEMU opens
//!   ([`RnodeHost::Serial`]): the pseudo-terminal of the RNode emulator of
//!   `seed-gateway simulate --serial PATH`, which must exist first.
//! - [`Guest::shell`] runs a command as root inside the guest over the
//!   `debug0` port. Only the test image has that shell; the product does not.
//! - [`Guest::power_cut`] kills QEMU with SIGKILL, as pulling the plug: the
//!   data disk keeps whatever reached it, and booting the same
//!   [`GuestOptions::data_disk`] again is the next power-on.
//! - A/B updates write to the system disk, so a test that installs one
//!   boots a writable copy ([`writable_system_disk`],
//!   [`GuestOptions::system_disk`]); other tests boot `disk.img` itself in
//!   QEMU's snapshot mode. A reboot inside the guest keeps QEMU, the console
//!   log and the debug connection: [`Guest::wait_boot`] waits for the next
//!   boot's `seed-boot: slot X` line of the boot selector and says which
//!   slot it chose, [`Guest::wait_shell`] for the debug shell to answer.
//!
//! Boot takes tens of seconds under emulation; every wait here is bounded and
//! fails with the tail of the guest console, which is where a boot problem
//! explains itself.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

/// Longest a boot may take to a status page that answers. Emulated boots take 15-40 s
/// here; the margin is for a machine busy with parallel builds.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// What "the status page answers" is polled on.
pub const STATUS_PATH: &str = "/api/v1/status";
/// Longest a debug-shell command may take.
pub const SHELL_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root (the parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// The architecture of a test image, and of the QEMU machine that boots it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `qemu-system-x86_64 -M pc`: the development convenience.
    X86_64,
    /// `qemu-system-aarch64 -M virt -cpu cortex-a57`: the architecture of the
    /// Raspberry Pi 4 and Zero 2 W the appliance ships for.
    Aarch64,
}

impl Arch {
    /// The name `image/build.sh --arch` and `image/boot.sh --arch` take.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// RAUC's `[system] compatible=` of this architecture's test image: a
    /// bundle for one is refused by the other.
    pub const fn compatible(self) -> &'static str {
        match self {
            Arch::X86_64 => "seed-gateway-qemu-x86_64",
            Arch::Aarch64 => "seed-gateway-qemu-aarch64",
        }
    }
}

/// Where `image/build.sh` puts the image of `arch`: `$SEED_IMAGE_OUT` or
/// `image/out` for x86_64, `$SEED_IMAGE_OUT_AARCH64` or `image/out-aarch64`
/// for arm64.
pub fn image_dir(arch: Arch) -> PathBuf {
    let (variable, default) = match arch {
        Arch::X86_64 => ("SEED_IMAGE_OUT", "image/out"),
        Arch::Aarch64 => ("SEED_IMAGE_OUT_AARCH64", "image/out-aarch64"),
    };
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(default))
}

/// Builds the test image of `arch`, once per process; later calls return
/// the first outcome. Panics with the script's output when the build fails.
pub fn ensure_image(arch: Arch) -> PathBuf {
    static BUILT: [OnceLock<Result<PathBuf, String>>; 2] = [OnceLock::new(), OnceLock::new()];
    let outcome = BUILT[arch as usize].get_or_init(|| {
        let output = std::process::Command::new("bash")
            .arg(repo_root().join("image/build.sh"))
            .arg("--arch")
            .arg(arch.name())
            .env("SEED_IMAGE_OUT", image_dir(arch))
            .output()
            .map_err(|e| format!("cannot run image/build.sh: {e}"))?;
        if output.status.success() {
            Ok(image_dir(arch))
        } else {
            Err(format!(
                "image/build.sh --arch {} failed ({}):\n{}{}",
                arch.name(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    match outcome {
        Ok(dir) => dir.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// Makes a test `async fn NAME(arch: Arch)` into one `#[tokio::test]` per
/// architecture, `NAME::x86_64` and `NAME::aarch64` (so `cargo test aarch64`
/// runs the arm64 ones). Attributes before the name go to both tests;
/// after `aarch64:`, to the arm64 one only.
///
/// ```ignore
/// on_each_arch!(first_boot_serves_the_status_page);
/// on_each_arch!(#[ignore = "a benchmark"] resident_memory);
/// on_each_arch!(kiosk_wifi, aarch64: #[ignore = "not in CI on arm64"]);
/// ```
#[macro_export]
macro_rules! on_each_arch {
    ($(#[$both:meta])* $test:ident $(, aarch64: $(#[$aarch64_only:meta])*)?) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread")]
            $(#[$both])*
            async fn x86_64() {
                super::$test($crate::qemu::Arch::X86_64).await
            }

            #[tokio::test(flavor = "multi_thread")]
            $(#[$both])*
            $($(#[$aarch64_only])*)?
            async fn aarch64() {
                super::$test($crate::qemu::Arch::Aarch64).await
            }
        }
    };
}

/// A free TCP port on 127.0.0.1 (free when asked; QEMU binds it right after).
pub fn unused_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// How the host side of the guest's RNode port is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RnodeHost {
    /// A Unix socket QEMU listens on; see [`Guest::connect_rnode`].
    Socket,
    /// A serial device QEMU opens at power-on (an emulated RNode's pty).
    Serial(PathBuf),
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub arch: Arch,
    /// The data disk. Missing: created blank (the guest formats it). The same
    /// file again: the next power-on of the same appliance.
    pub data_disk: PathBuf,
    pub rnode: RnodeHost,
    /// Guest RAM; 512 MiB is the Raspberry Pi Zero 2 W.
    pub memory_mb: u32,
    /// Appended to the kernel command line (e.g. `seed.data=/dev/vdb1`).
    pub kernel_append: String,
    /// A system disk the guest may write to (a copy: see
    /// [`writable_system_disk`]); `None` boots the image's `disk.img` in
    /// snapshot mode, every write dropped.
    pub system_disk: Option<PathBuf>,
    /// A FAT disk standing in for the SD card's boot partition (see
    /// [`fat_boot_partition`]).
    pub boot_partition: Option<PathBuf>,
}

impl GuestOptions {
    pub fn new(arch: Arch, data_disk: impl Into<PathBuf>) -> GuestOptions {
        GuestOptions {
            arch,
            data_disk: data_disk.into(),
            rnode: RnodeHost::Socket,
            memory_mb: 512,
            kernel_append: String::new(),
            system_disk: None,
            boot_partition: None,
        }
    }

    pub fn system_disk(mut self, disk: impl Into<PathBuf>) -> GuestOptions {
        self.system_disk = Some(disk.into());
        self
    }

    pub fn boot_partition(mut self, disk: impl Into<PathBuf>) -> GuestOptions {
        self.boot_partition = Some(disk.into());
        self
    }

    pub fn kernel_append(mut self, args: &str) -> GuestOptions {
        self.kernel_append = args.to_string();
        self
    }

    pub fn rnode(mut self, rnode: RnodeHost) -> GuestOptions {
        self.rnode = rnode;
        self
    }
}

/// What a guest command printed (stdout and stderr together) and its status.
#[derive(Debug, Clone)]
pub struct ShellOutput {
    pub status: i32,
    pub output: String,
}

/// A running guest. Dropping it kills QEMU.
pub struct Guest {
    qemu: Child,
    work_dir: tempfile::TempDir,
    http_port: u16,
    debug: Option<BufReader<UnixStream>>,
    commands: u64,
    powered_on: Instant,
}

/// How long the guest took from power-on to a status page that answers.
#[derive(Debug, Clone, Copy)]
pub struct BootTime {
    /// Host wall clock from starting QEMU to the first 200 from
    /// `/api/v1/status`.
    pub wall: Duration,
    /// Guest uptime read right after that first 200 (emulation makes guest
    /// time run slower than wall time; this is the figure a real board's
    /// boot is comparable with).
    pub guest_uptime: Duration,
    /// Guest uptime at which the watchdog feeder first had an answer from
    /// the gateway (`/run/seed/status-page-uptime`), when it did.
    pub feeder_uptime: Option<Duration>,
}

impl Guest {
    /// Powers on the test image (building it first if needed). Returns once
    /// QEMU runs; the guest is still booting (see [`Guest::wait_status_page`]).
    pub async fn boot(options: &GuestOptions) -> Guest {
        let image = ensure_image(options.arch);
        let work_dir = tempfile::Builder::new()
            .prefix("seed-qemu-")
            .tempdir()
            .expect("create a temp dir for the guest's sockets and logs");
        let http_port = unused_port();
        let debug_socket = work_dir.path().join("debug0.sock");
        let mut command = Command::new("bash");
        command
            .arg(repo_root().join("image/boot.sh"))
            .arg("--arch")
            .arg(options.arch.name())
            .arg("--out")
            .arg(&image)
            .arg("--data")
            .arg(&options.data_disk)
            .arg("--http-port")
            .arg(http_port.to_string())
            .arg("--debug-socket")
            .arg(&debug_socket)
            .arg("--console-log")
            .arg(work_dir.path().join("console.log"))
            .arg("--memory")
            .arg(options.memory_mb.to_string())
            .arg("--append")
            .arg(&options.kernel_append);
        if let Some(disk) = &options.system_disk {
            command.arg("--disk").arg(disk).arg("--writable-disk");
        }
        if let Some(disk) = &options.boot_partition {
            command.arg("--boot-partition").arg(disk);
        }
        match &options.rnode {
            RnodeHost::Socket => {
                command
                    .arg("--rnode-socket")
                    .arg(work_dir.path().join("rnode0.sock"));
            }
            RnodeHost::Serial(path) => {
                command.arg("--rnode-serial").arg(path);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut qemu = command.spawn().expect("run image/boot.sh");
        let powered_on = Instant::now();

        let stdout = qemu.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Keep draining QEMU's output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let stderr = qemu.stderr.take().expect("piped stderr");
        let stderr_log = work_dir.path().join("qemu.stderr");
        tokio::spawn(async move {
            let mut stderr = stderr;
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text).await;
            let _ = tokio::fs::write(stderr_log, text).await;
        });

        let mut guest = Guest {
            qemu,
            work_dir,
            http_port,
            debug: None,
            commands: 0,
            powered_on,
        };
        guest.debug = Some(guest.connect_debug(&debug_socket).await);
        guest
    }

    async fn connect_debug(&mut self, socket: &Path) -> BufReader<UnixStream> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match UnixStream::connect(socket).await {
                Ok(stream) => return BufReader::new(stream),
                Err(e) if Instant::now() >= deadline => {
                    panic!(
                        "no debug socket {}: {e}\n{}",
                        socket.display(),
                        self.diagnostics()
                    )
                }
                Err(_) => sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The host port forwarded to the guest's status page (port 8080).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The host end of the RNode port, with [`RnodeHost::Socket`]: a stream
    /// to write the RNode's KISS bytes to and read the gateway's from.
    pub async fn connect_rnode(&self) -> UnixStream {
        let socket = self.work_dir.path().join("rnode0.sock");
        UnixStream::connect(&socket)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()))
    }

    /// `GET path` on the guest's status page server; `None` when nothing
    /// answers yet (QEMU accepts the host connection and closes it while the
    /// guest's port is closed).
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, path).await
    }

    /// Waits until the status page's API (`/api/v1/status`) answers 200 --
    /// the gateway runs and serves, whatever its radios are doing -- and
    /// measures how long that took from power-on.
    pub async fn wait_status_page(&mut self) -> BootTime {
        let deadline = self.powered_on + BOOT_TIMEOUT;
        loop {
            if let Some((200, _)) = self.http_get(STATUS_PATH).await {
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no 200 from {STATUS_PATH} within {BOOT_TIMEOUT:?} of power-on\n{}",
                    self.diagnostics()
                );
            }
            if let Ok(Some(status)) = self.qemu.try_wait() {
                panic!(
                    "QEMU exited ({status}) before the status page answered\n{}",
                    self.diagnostics()
                );
            }
            sleep(Duration::from_millis(250)).await;
        }
        let wall = self.powered_on.elapsed();
        let guest_uptime = self.uptime().await;
        let first = self
            .shell("cat /run/seed/status-page-uptime 2>/dev/null")
            .await;
        let feeder_uptime = first
            .output
            .trim()
            .parse::<f64>()
            .ok()
            .map(Duration::from_secs_f64);
        BootTime {
            wall,
            guest_uptime,
            feeder_uptime,
        }
    }

    /// Waits until `path` answers 200 (the status page after a restart,
    /// `/healthz` once the radio is up), bounded; returns how long it took.
    pub async fn wait_for_200(&self, path: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some((200, _)) = self.http_get(path).await {
                return started.elapsed();
            }
            if started.elapsed() >= limit {
                let last = self.http_get(path).await;
                panic!(
                    "no 200 from {path} within {limit:?} (last answer: {last:?})\n{}",
                    self.diagnostics()
                );
            }
            sleep(Duration::from_millis(250)).await;
        }
    }

    /// The guest's uptime (`/proc/uptime`).
    pub async fn uptime(&mut self) -> Duration {
        let out = self.shell("cut -d' ' -f1 /proc/uptime").await;
        let seconds: f64 = out
            .output
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("unexpected /proc/uptime: {:?}", out.output));
        Duration::from_secs_f64(seconds)
    }

    /// Runs `command` as root in the guest, in a subshell of the debug shell
    /// (so `exit` and `cd` stay inside it); stdin is /dev/null, stderr goes
    /// with stdout. Background processes it starts keep running.
    pub async fn shell(&mut self, command: &str) -> ShellOutput {
        self.commands += 1;
        let marker = format!("__seed_done_{}__", self.commands);
        // A subshell, so `exit` in the command ends only the command.
        let script = format!("( {command}\n) </dev/null 2>&1; echo \"{marker} $?\"\n");
        let debug = self.debug.as_mut().expect("debug shell connected");
        let exchange = async {
            debug.get_mut().write_all(script.as_bytes()).await?;
            let mut output = String::new();
            loop {
                let mut line = String::new();
                if debug.read_line(&mut line).await? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "debug shell closed",
                    ));
                }
                if let Some(status) = line.trim_end().strip_prefix(&format!("{marker} ")) {
                    let status = status.parse().unwrap_or(-1);
                    return Ok(ShellOutput { status, output });
                }
                output.push_str(&line);
            }
        };
        match timeout(SHELL_TIMEOUT, exchange).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("guest shell `{command}`: {e}\n{}", self.diagnostics()),
            Err(_) => panic!(
                "guest shell `{command}` took over {SHELL_TIMEOUT:?}\n{}",
                self.diagnostics()
            ),
        }
    }

    /// Like [`Guest::shell`], but gives up after `limit` and returns `None`
    /// (a guest that is rebooting does not answer). A late answer to a
    /// command given up on is skipped by the next one: each waits for its
    /// own marker.
    pub async fn try_shell(&mut self, command: &str, limit: Duration) -> Option<ShellOutput> {
        self.commands += 1;
        let marker = format!("__seed_done_{}__", self.commands);
        let script = format!("( {command}\n) </dev/null 2>&1; echo \"{marker} $?\"\n");
        let debug = self.debug.as_mut().expect("debug shell connected");
        let exchange = async {
            debug.get_mut().write_all(script.as_bytes()).await.ok()?;
            let mut output = String::new();
            loop {
                let mut line = String::new();
                if debug.read_line(&mut line).await.ok()? == 0 {
                    return None;
                }
                if let Some(status) = line.trim_end().strip_prefix(&format!("{marker} ")) {
                    let status = status.parse().unwrap_or(-1);
                    return Some(ShellOutput { status, output });
                }
                output.push_str(&line);
            }
        };
        timeout(limit, exchange).await.ok().flatten()
    }

    /// Waits until the debug shell answers (after a reboot), bounded.
    pub async fn wait_shell(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .try_shell("true", Duration::from_secs(5))
                .await
                .is_some()
            {
                return;
            }
        }
        panic!(
            "the debug shell did not answer within {limit:?}\n{}",
            self.diagnostics()
        );
    }

    /// The slots the boot selector chose so far, one per boot, in order
    /// (the initramfs's `seed-boot: slot X (DEVICE)` console lines).
    pub fn booted_slots(&self) -> Vec<String> {
        self.console()
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find("seed-boot: slot ")? + "seed-boot: slot ".len()..];
                rest.split_whitespace().next().map(str::to_string)
            })
            .collect()
    }

    /// Waits until the guest has booted `count` times since power-on (a
    /// reboot keeps QEMU running), bounded by `limit`; returns the slot the
    /// last of those boots chose.
    pub async fn wait_boot(&mut self, count: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let slots = self.booted_slots();
            if slots.len() >= count {
                return slots[count - 1].clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "boot number {count} did not come within {limit:?} (boots so far: {slots:?})\n{}",
                    self.diagnostics()
                );
            }
            if let Ok(Some(status)) = self.qemu.try_wait() {
                panic!(
                    "QEMU exited ({status}) waiting for boot number {count}\n{}",
                    self.diagnostics()
                );
            }
            sleep(Duration::from_millis(250)).await;
        }
    }

    /// Like [`Guest::shell`], and fails the test unless the command exits 0.
    pub async fn shell_ok(&mut self, command: &str) -> String {
        let out = self.shell(command).await;
        assert_eq!(
            out.status, 0,
            "guest command `{command}` failed:\n{}",
            out.output
        );
        out.output
    }

    /// Pulls the plug: SIGKILL to QEMU, nothing in the guest gets to react.
    pub async fn power_cut(mut self) {
        self.qemu.start_kill().expect("kill QEMU");
        let _ = timeout(Duration::from_secs(30), self.qemu.wait()).await;
    }

    /// A clean shutdown (`poweroff` in the guest: init scripts stop in
    /// reverse order, /data is unmounted), waiting for QEMU to exit.
    pub async fn poweroff(mut self) {
        if let Some(debug) = self.debug.as_mut() {
            let _ = debug.get_mut().write_all(b"poweroff\n").await;
        }
        match timeout(Duration::from_secs(120), self.qemu.wait()).await {
            Ok(_) => {}
            Err(_) => panic!(
                "guest did not power off within 120 s\n{}",
                self.diagnostics()
            ),
        }
    }

    /// The guest console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.work_dir.path().join("console.log")).unwrap_or_default()
    }

    /// The tail of the console and QEMU's own complaints, for failure messages.
    pub fn diagnostics(&self) -> String {
        self.diagnostics_with(60)
    }

    fn diagnostics_with(&self, console_lines: usize) -> String {
        let console = self.console();
        let tail: Vec<&str> = console.lines().rev().take(console_lines).collect();
        let stderr =
            std::fs::read_to_string(self.work_dir.path().join("qemu.stderr")).unwrap_or_default();
        format!(
            "--- guest console (last {console_lines} lines) ---\n{}\n--- qemu stderr ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            stderr
        )
    }
}

/// A failing test leaves the guest's whole console in
/// `tests/artifacts/<test>-console.log` and prints where, with its tail: the
/// assertions name what went wrong, the console says why (a CI run keeps
/// only what the test printed).
impl Drop for Guest {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("guest")
            .replace("::", "-");
        let saved = crate::artifacts_dir().join(format!("{test}-console.log"));
        let where_saved = std::fs::create_dir_all(crate::artifacts_dir())
            .and_then(|()| std::fs::write(&saved, self.console()))
            .map_or_else(
                |e| format!("(could not save the console to {}: {e})", saved.display()),
                |()| format!("whole console: {}", saved.display()),
            );
        eprintln!("{}\n{where_saved}", self.diagnostics_with(200));
    }
}

/// A one-shot HTTP/1.0 GET on 127.0.0.1:port; `None` when the connection
/// fails or closes without a status line.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        Some((status, body))
    };
    timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// A copy of the system disk (`disk.img`: both root filesystem slots and
/// the boot state) of `arch`'s image at `path`, for a guest that writes to
/// it ([`GuestOptions::system_disk`]). Sparse: the empty slot costs nothing.
pub fn writable_system_disk(arch: Arch, path: &Path) -> PathBuf {
    let image = ensure_image(arch);
    let status = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(image.join("disk.img"))
        .arg(path)
        .status()
        .expect("run cp");
    assert!(status.success(), "copying disk.img to {}", path.display());
    path.to_path_buf()
}

/// A data disk that already holds `files` (path inside the data partition,
/// contents), made with `mkfs.ext4 -d` on the host: an appliance whose
/// technician left configuration overrides on /data.
pub fn data_disk_with(path: &Path, files: &[(&str, &str)]) {
    let staging = tempfile::tempdir().expect("temp dir for the data disk contents");
    for (name, contents) in files {
        let file = staging.path().join(name);
        std::fs::create_dir_all(file.parent().expect("file has a parent"))
            .expect("create directories in the data disk staging dir");
        std::fs::write(&file, contents).expect("write a data disk file");
    }
    ext4_image_of(staging.path(), path, "data", "256M");
}

/// An ext4 image at `path` (size like `256M`) holding the contents of
/// `dir`, owned by root, made with `mkfs.ext4 -d` (no mounting, no root).
pub fn ext4_image_of(dir: &Path, path: &Path, label: &str, size: &str) {
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d"])
        .arg(dir)
        .arg(path)
        .arg(size)
        .status()
        .expect("run mkfs.ext4 (e2fsprogs)");
    assert!(
        status.success(),
        "mkfs.ext4 -d failed for {}",
        path.display()
    );
}

/// A FAT disk at `path` holding `files` (name, contents) at its root: the
/// SD card's boot partition as a technician leaves it after writing to it
/// from a PC. Made with `mkfs.vfat` and `mcopy` (dosfstools, mtools).
pub fn fat_boot_partition(path: &Path, files: &[(&str, &str)]) {
    run_checked(
        std::process::Command::new("mkfs.vfat")
            .args(["-C", "-n", "BOOT"])
            .arg(path)
            .arg("16384"),
        "mkfs.vfat (dosfstools)",
    );
    let staging = tempfile::tempdir().expect("temp dir for the boot partition's files");
    for (name, contents) in files {
        let file = staging.path().join(name);
        std::fs::write(&file, contents).expect("write a boot partition file");
        run_checked(
            std::process::Command::new("mcopy")
                .arg("-i")
                .arg(path)
                .arg(&file)
                .arg(format!("::{name}")),
            "mcopy (mtools)",
        );
    }
}

/// The names of the files at the root of the FAT disk at `path`.
pub fn fat_files(path: &Path) -> Vec<String> {
    let output = std::process::Command::new("mdir")
        .args(["-b", "-i"])
        .arg(path)
        .arg("::")
        .output()
        .expect("run mdir (mtools)");
    // mdir exits 1 on an empty directory ("No files").
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim_start_matches("::/").to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

fn run_checked(command: &mut std::process::Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
