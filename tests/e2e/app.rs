//! The desktop app itself, under Xvfb and a private session bus: its window renders the UI with
//! live figures; its tray item registers with a tray (`dbus/tray_host.py`, a
//! StatusNotifierWatcher as desktops run), whose menu lists the loaded model and whose Stop
//! unloads it; the panel opens from the menu and from a click on the icon; with every window
//! closed no WebKit process is left; a second launch hands over to the first; Quit exits
//! cleanly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::notifications::NotificationRecorder;
use crate::support::{Options, Server, SMOLLM2};

/// An X server, a session bus and a system tray, as a desktop session has; all stopped on drop.
struct Desktop {
    display: String,
    xvfb: Child,
    bus: NotificationRecorder,
    tray: TrayHost,
}

/// The tray: `dbus/tray_host.py` on the session bus, asked one command a line.
struct TrayHost {
    child: Child,
    replies: std::io::BufReader<std::process::ChildStdout>,
}

impl TrayHost {
    fn start(bus: &str) -> Self {
        use std::io::BufRead as _;
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/dbus/tray_host.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the tray host (python3-dbus and python3-gi from Debian)");
        let mut replies = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut ready = String::new();
        replies.read_line(&mut ready).expect("tray host output");
        assert_eq!(ready.trim(), "ready", "the tray host did not start");
        Self { child, replies }
    }

    fn ask(&mut self, command: &str) -> serde_json::Value {
        use std::io::{BufRead as _, Write as _};
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{command}").expect("tray host input");
        let mut line = String::new();
        self.replies.read_line(&mut line).expect("tray host reply");
        let reply: serde_json::Value = serde_json::from_str(&line).expect("a JSON reply");
        assert!(reply.get("error").is_none(), "{command}: {reply}");
        reply
    }

    fn has_item(&mut self) -> bool {
        self.ask("items")["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
    }

    /// The menu's top-level labels, separators as "—".
    fn menu(&mut self) -> Vec<String> {
        let reply = self.ask("menu");
        reply["menu"]
            .as_array()
            .expect("menu entries")
            .iter()
            .map(|e| match e["type"].as_str() {
                Some("separator") => "—".to_string(),
                _ => e["label"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Chooses the menu entry whose label is `label`, as a click on it does.
    fn choose(&mut self, label: &str) {
        let reply = self.ask("menu");
        let entry = reply["menu"]
            .as_array()
            .and_then(|m| m.iter().find(|e| e["label"] == label))
            .unwrap_or_else(|| panic!("no {label:?} in the menu: {reply}"))
            .clone();
        assert_eq!(entry["enabled"], true, "{entry}");
        self.ask(&format!("click {}", entry["id"]));
    }

    /// The mean colour of the icon's opaque pixels.
    fn icon(&mut self) -> (i64, i64, i64) {
        let reply = self.ask("icon");
        let mean: Vec<i64> = reply["mean"]
            .as_array()
            .map(|m| m.iter().filter_map(|v| v.as_i64()).collect())
            .unwrap_or_default();
        assert_eq!(mean.len(), 3, "{reply}");
        (mean[0], mean[1], mean[2])
    }
}

impl Desktop {
    fn start() -> Self {
        for tool in ["Xvfb", "xdotool", "import"] {
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {tool}"))
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing (scripts/test.sh installs xvfb, xdotool and imagemagick)"
            );
        }
        // A display number of its own, so parallel runs and a developer's X do not collide.
        let number = 90 + std::process::id() % 100;
        let display = format!(":{number}");
        let xvfb = Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb");
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
        wait_until("the X server", Duration::from_secs(10), || socket.exists());
        let bus = NotificationRecorder::start();
        let tray = TrayHost::start(&bus.address);
        Self {
            display,
            xvfb,
            bus,
            tray,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DISPLAY", self.display.clone()),
            ("DBUS_SESSION_BUS_ADDRESS", self.bus.address.clone()),
        ]
    }

    fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The id of the first visible window whose name matches `pattern` (a regex).
    fn window_id(&self, pattern: &str) -> String {
        self.xdotool(&["search", "--onlyvisible", "--name", pattern])
            .lines()
            .next()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no visible window named {pattern:?}"))
    }

    /// The names of the visible windows whose name matches `pattern` (a regex).
    fn windows_named(&self, pattern: &str) -> Vec<String> {
        self.xdotool(&["search", "--onlyvisible", "--name", pattern])
            .lines()
            .map(|id| self.xdotool(&["getwindowname", id]).trim().to_string())
            .collect()
    }

    /// Window `id`'s position and size: ((x, y), (width, height)).
    fn geometry(&self, id: &str) -> ((i32, i32), (i32, i32)) {
        let geometry = self.xdotool(&["getwindowgeometry", id]);
        let numbers = |label: &str, separator: char| -> (i32, i32) {
            let text = geometry
                .lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_default();
            let mut parts = text.split(separator).filter_map(|n| n.parse().ok());
            (parts.next().unwrap_or(-1), parts.next().unwrap_or(-1))
        };
        (numbers("Position:", ','), numbers("Geometry:", 'x'))
    }

    /// How many pixels of window `id` are within a few levels of `rgb` (each channel).
    fn pixels_like(&self, id: &str, rgb: (u8, u8, u8)) -> usize {
        let out = Command::new("import")
            .args(["-window", id, "-depth", "8", "txt:-"])
            .env("DISPLAY", &self.display)
            .output()
            .expect("import (imagemagick)");
        let near = |a: u8, b: u8| a.abs_diff(b) <= 12;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let list = line.split("srgb(").nth(1)?.split(')').next()?;
                let v: Vec<u8> = list
                    .split(',')
                    .filter_map(|v| v.trim().parse().ok())
                    .collect();
                (v.len() >= 3).then(|| (v[0], v[1], v[2]))
            })
            .filter(|&(r, g, b)| near(r, rgb.0) && near(g, rgb.1) && near(b, rgb.2))
            .count()
    }

    /// Closes the visible windows whose name matches `pattern` as a window manager's close
    /// button does (WM_DELETE_WINDOW; xdotool 3.2016 has no `windowclose`).
    fn close_windows(&self, pattern: &str) {
        const CLOSE: &str = include_str!("x11/close_windows.py");
        let ids = self.xdotool(&["search", "--onlyvisible", "--name", pattern]);
        // Debian's python3-xlib is for Debian's Python, which a venv on PATH may hide.
        let status = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(CLOSE)
            .args(ids.split_whitespace())
            .env("DISPLAY", &self.display)
            .status()
            .expect("python3");
        assert!(
            status.success(),
            "could not close windows (python3-xlib missing?)"
        );
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("app-artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts folder");
        let path = dir.join(name);
        let status = Command::new("import")
            .args(["-window", "root"])
            .arg(&path)
            .env("DISPLAY", &self.display)
            .status()
            .expect("import (imagemagick)");
        assert!(status.success(), "screenshot failed");
        path
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for child in [&mut self.tray.child, &mut self.xvfb] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The processes below `pid`: its children, theirs, and so on.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        found.extend(children(found[next]));
        next += 1;
    }
    found.split_off(1)
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The parent is the second field after the command name's closing parenthesis.
            let parent: u32 = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (parent == pid).then_some(child)
        })
        .collect()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn the_app_window_and_tray_show_the_pool_and_stop_a_model() {
    let mut desktop = Desktop::start();
    // With an API key, so the window's figures also show the app hands its page the key.
    let mut app = Server::start_with(Options {
        desktop: true,
        env: desktop.env(),
        api_key: Some("app-window-key-0123456789".into()),
        ..Options::default()
    });
    let events = app.events().await;
    let (status, body) = app
        .call(Method::POST, &format!("/api/memory/models/{SMOLLM2}/load"))
        .await;
    assert_eq!(status, 200, "{body}");

    // The window shows the UI; its title carries the page's live figures, so the page has
    // read the pool and rendered the gauges.
    wait_until(
        "the window with the loaded model",
        Duration::from_secs(30),
        || {
            !desktop
                .windows_named("Headroom — System .* · 1 loaded")
                .is_empty()
        },
    );
    let title = desktop.windows_named("Headroom — System").join(" | ");
    println!("window: {title}");
    assert!(title.contains("Limit"), "{title}");
    // The title changes before WebKit paints: wait for the gauges' pixels. The System gauge's
    // fill is the normal tier's green (ui/style.css --tier-normal, #1f9d4a) over a bar 8 px
    // high, a few hundred pixels at this machine's use; a blank window has none.
    let id = desktop.window_id("Headroom — System");
    let mut green = 0;
    wait_until(
        "the window to paint its gauges",
        Duration::from_secs(30),
        || {
            green = desktop.pixels_like(&id, (0x1f, 0x9d, 0x4a));
            green >= 100
        },
    );
    println!("the window painted: {green} pixels of the gauge's green");
    let window = desktop.screenshot("window.png");
    println!("screenshot: {}", window.display());

    // The tray item is registered with the tray, and its menu lists the model.
    wait_until("the tray item", Duration::from_secs(10), || {
        desktop.tray.has_item()
    });
    let model_line = format!("{SMOLLM2} · ");
    let mut menu = Vec::new();
    wait_until(
        "a tray menu listing the model",
        Duration::from_secs(10),
        || {
            menu = desktop.tray.menu();
            menu.iter().any(|l| l.starts_with(&model_line))
        },
    );
    println!("tray menu: {menu:?}");
    assert!(menu[0].starts_with("System: "), "{menu:?}");
    assert!(menu[1].starts_with("Pool: "), "{menu:?}");
    for label in [
        "Unload all",
        "Open Headroom…",
        "Preferences…",
        "Launch at login",
        "Quit",
    ] {
        assert!(menu.iter().any(|l| l == label), "no {label:?} in {menu:?}");
    }
    desktop.tray.choose(&format!("Stop {SMOLLM2}"));
    let unloaded = tokio::time::timeout(
        Duration::from_secs(15),
        events.wait_for("the unload", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        }),
    )
    .await
    .expect("the model unloaded after Stop in the tray menu");
    assert_eq!(unloaded["reason"], "requested", "{unloaded}");
    let (_, memory) = app.get("/api/memory/status").await;
    assert_eq!(
        memory["models"].as_array().map(Vec::len),
        Some(0),
        "{memory}"
    );
    assert!(app.stderr().contains("stopped from the tray"));
    println!(
        "stopped from the tray: {} MB back",
        unloaded["reclaimed"].as_u64().unwrap_or(0) / 1_000_000
    );

    // The icon follows the pressure tier: thresholds under what the machine uses make it
    // critical (red), the defaults bring it back (green).
    let green = desktop.tray.icon();
    println!("tray icon at normal: {green:?}");
    assert!(
        green.1 > green.0 + 60,
        "not the normal (green) icon: {green:?}"
    );
    app.set_critical_thresholds(true).await;
    wait_until(
        "the critical (red) tray icon",
        Duration::from_secs(10),
        || {
            let (r, g, _) = desktop.tray.icon();
            r > g + 100
        },
    );
    println!("tray icon at critical: {:?}", desktop.tray.icon());
    app.set_critical_thresholds(false).await;
    wait_until(
        "the normal tray icon again",
        Duration::from_secs(10),
        || desktop.tray.icon() == green,
    );

    // The panel: the menu's "Open Headroom…" opens it in the screen's top right corner, with
    // the gauges and the loaded model; Stop in it unloads the model; it closes when it loses
    // the focus.
    let (status, body) = app
        .call(Method::POST, &format!("/api/memory/models/{SMOLLM2}/load"))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_until(
        "the menu listing the model again",
        Duration::from_secs(10),
        || {
            desktop
                .tray
                .menu()
                .iter()
                .any(|l| l.starts_with(&model_line))
        },
    );
    desktop.tray.choose("Open Headroom…");
    wait_until("the panel with the model", Duration::from_secs(30), || {
        !desktop
            .windows_named("Headroom panel — System .* · 1 loaded")
            .is_empty()
    });
    let panel = desktop.window_id("Headroom panel");
    let ((px, py), (pw, ph)) = desktop.geometry(&panel);
    println!("panel at {px},{py}, {pw}x{ph}");
    assert_eq!((pw, ph), (360, 420));
    // No panel reserves space on this screen (1280 wide): the panel's top right corner is
    // the screen's.
    assert_eq!((px + pw, py), (1280, 0));
    let mut green = 0;
    wait_until(
        "the panel to paint its gauges",
        Duration::from_secs(30),
        || {
            green = desktop.pixels_like(&panel, (0x1f, 0x9d, 0x4a));
            green >= 100
        },
    );
    println!("the panel painted: {green} pixels of the gauge's green");
    println!("screenshot: {}", desktop.screenshot("panel.png").display());
    // Stop: the third stop of the keyboard in the panel (after Open Headroom… and Unload all).
    desktop.xdotool(&[
        "mousemove",
        &(px + 180).to_string(),
        &(py + 300).to_string(),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    desktop.xdotool(&["key", "Tab", "Tab", "Tab", "Return"]);
    let unloaded = tokio::time::timeout(
        Duration::from_secs(15),
        events.wait_for("the unload from the panel", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        }),
    )
    .await
    .expect("the model unloaded after Stop in the panel");
    assert_eq!(unloaded["reason"], "requested", "{unloaded}");
    wait_until(
        "the panel to show no model",
        Duration::from_secs(10),
        || {
            !desktop
                .windows_named("Headroom panel — System .* · 0 loaded")
                .is_empty()
        },
    );
    // Its "Open Headroom…" link (at the top right of its header) opens the full window.
    desktop.xdotool(&[
        "mousemove",
        &(px + 180).to_string(),
        &(py + 54).to_string(),
        "click",
        "1",
    ]);
    wait_until(
        "the panel's link to the full window",
        Duration::from_secs(10),
        || app.stderr().contains("the panel opens the full window"),
    );
    // The focus goes to another window, as a window manager moves it on a click elsewhere
    // (there is none here, so the test moves it): the panel closes.
    let main = desktop.window_id("^Headroom — System");
    desktop.xdotool(&["windowfocus", "--sync", &panel]);
    std::thread::sleep(Duration::from_millis(300));
    desktop.xdotool(&["mousemove", "100", "600", "windowfocus", "--sync", &main]);
    wait_until("the panel to close", Duration::from_secs(10), || {
        desktop.windows_named("Headroom panel").is_empty()
    });

    // A left click on the icon (the tray's Activate, with where it was clicked) opens the
    // panel under that point, and a second click closes it.
    desktop.tray.ask("activate 600 10");
    wait_until("the panel at the click", Duration::from_secs(30), || {
        !desktop.windows_named("Headroom panel").is_empty()
    });
    let panel = desktop.window_id("Headroom panel");
    let ((px, py), _) = desktop.geometry(&panel);
    println!("panel opened by a click at 600,10: at {px},{py}");
    // Centred under the point: 600 less half its width.
    assert_eq!((px, py), (600 - 180, 10));
    desktop.tray.ask("activate 600 10");
    wait_until(
        "the panel closed by a second click",
        Duration::from_secs(10),
        || desktop.windows_named("Headroom panel").is_empty(),
    );

    // With every window closed, the window process ends and WebKit's helpers with it: only
    // the menu-bar process is left, with no child.
    let pid = app.pid();
    let below = descendants(pid);
    println!(
        "processes under the app with a window open: {}",
        below.len()
    );
    assert!(
        below.len() >= 2,
        "no window process with WebKit's helpers under the app: {below:?}"
    );
    desktop.close_windows("^Headroom");
    wait_until(
        "the window process and WebKit's helpers to exit",
        Duration::from_secs(15),
        || {
            descendants(pid).is_empty()
                && below
                    .iter()
                    .all(|p| !PathBuf::from(format!("/proc/{p}")).exists())
        },
    );
    assert!(app.stderr().contains("the window process exited"));
    // The menu bar itself never maps WebKit or a toolkit: its tray is a D-Bus service.
    let (gui, _) = crate::support::gui_mappings(pid);
    assert!(gui.is_empty(), "{gui:#?}");
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(str::to_string)
        .unwrap_or_default();
    println!("every window closed: the app has no child process left; {rss}");

    // A second launch hands over to the running app and exits, starting no server; the
    // running app opens its window again.
    let home = tempfile::tempdir().expect("tmp");
    let started = Instant::now();
    let mut second = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["--port", "0", "--data-dir"])
        .arg(home.path().join("data"))
        .arg("--config")
        .arg(home.path().join("config.toml"))
        .envs(desktop.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("second launch");
    let exited = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = second.kill();
            panic!("the second launch did not hand over and exit within 15 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("second launch exited in {:?}", started.elapsed());
    assert!(exited.success(), "{exited:?}");
    let mut printed = String::new();
    if let Some(mut out) = second.stdout.take() {
        use std::io::Read as _;
        let _ = out.read_to_string(&mut printed);
    }
    assert!(
        !printed.contains("Headroom listening"),
        "the second launch started a server of its own"
    );
    wait_until(
        "the window shown again after the second launch",
        Duration::from_secs(30),
        || !desktop.windows_named("^Headroom — System").is_empty(),
    );
    println!(
        "window shown again {:?} after the second launch",
        started.elapsed()
    );

    // Quit, from the tray menu, ends the app cleanly, its window with it.
    desktop.tray.choose("Quit");
    assert_eq!(app.wait_exit(Duration::from_secs(20), "Quit"), Some(0));
    wait_until(
        "the window to go with the app",
        Duration::from_secs(10),
        || desktop.windows_named("^Headroom").is_empty(),
    );
}
