//! The desktop app itself, under Xvfb: its window renders the UI with live figures, its tray
//! icon docks in `trayer`, the tray menu opens with a click and lists the loaded model, and
//! choosing Stop there unloads it. A second launch hands over to the first; Quit exits cleanly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::notifications::NotificationRecorder;
use crate::support::{Options, Server, SMOLLM2};

/// An X server, a session bus and a system tray (`trayer`), as a desktop session has; all
/// stopped on drop.
struct Desktop {
    display: String,
    xvfb: Child,
    trayer: Child,
    bus: NotificationRecorder,
}

impl Desktop {
    fn start() -> Self {
        for tool in ["Xvfb", "trayer", "xdotool", "import"] {
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {tool}"))
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing (scripts/test.sh installs xvfb, trayer, xdotool and imagemagick)"
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
        let trayer = Command::new("trayer")
            .args([
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "request",
            ])
            .args([
                "--height",
                "32",
                "--SetDockType",
                "true",
                "--transparent",
                "false",
            ])
            .env("DISPLAY", &display)
            .stderr(Stdio::null())
            .spawn()
            .expect("trayer");
        Self {
            display,
            xvfb,
            trayer,
            bus,
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

    /// The names of the visible windows whose name matches `pattern` (a regex).
    fn windows_named(&self, pattern: &str) -> Vec<String> {
        self.xdotool(&["search", "--onlyvisible", "--name", pattern])
            .lines()
            .map(|id| self.xdotool(&["getwindowname", id]).trim().to_string())
            .collect()
    }

    /// Where the tray icon is: the middle of the icon window that trayer embedded.
    fn tray_icon(&self) -> Option<(i32, i32)> {
        self.xdotool(&["search", "--class", "trayer"])
            .lines()
            .filter_map(|id| {
                let geometry = self.xdotool(&["getwindowgeometry", "--shell", id]);
                let field = |name: &str| -> Option<i32> {
                    geometry
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}=")))
                        .and_then(|v| v.trim().parse().ok())
                };
                let (x, y, w, h) = (field("X")?, field("Y")?, field("WIDTH")?, field("HEIGHT")?);
                // trayer's own 10×10 helper window is not the panel.
                (w >= 16 && h >= 16).then_some((x + w / 2, y + h / 2))
            })
            .next()
    }

    /// The colour of one screen pixel, as (red, green, blue).
    fn pixel(&self, x: i32, y: i32) -> (u8, u8, u8) {
        let out = Command::new("import")
            .args(["-window", "root", "-crop", &format!("1x1+{x}+{y}"), "txt:-"])
            .env("DISPLAY", &self.display)
            .output()
            .expect("import (imagemagick)");
        // "0,0: (51400,10280,10280)  #C8C828282828  srgb(200,40,40)": the srgb() figures are
        // 8-bit whatever the build's quantum depth.
        let text = String::from_utf8_lossy(&out.stdout);
        let rgb: Vec<u8> = text
            .split("srgb(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .map(|list| {
                list.split(',')
                    .filter_map(|v| v.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(rgb.len(), 3, "no colour in {text:?}");
        (rgb[0], rgb[1], rgb[2])
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
        for child in [&mut self.trayer, &mut self.xvfb] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
    let desktop = Desktop::start();
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
    let id = desktop
        .xdotool(&["search", "--onlyvisible", "--name", "Headroom — System"])
        .lines()
        .next()
        .map(str::to_string)
        .expect("the window's id");
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

    // The tray icon is docked, and its menu lists the model.
    wait_until("the tray icon in trayer", Duration::from_secs(10), || {
        desktop.tray_icon().is_some()
    });
    wait_until(
        "a tray menu listing the model",
        Duration::from_secs(10),
        || {
            app.stderr()
                .lines()
                .any(|l| l.contains("tray menu rebuilt") && l.contains(&format!("{SMOLLM2} · ")))
        },
    );
    let (x, y) = desktop.tray_icon().expect("tray icon");
    let before = desktop.xdotool(&["search", "--onlyvisible", "--class", "headroom"]);
    desktop.xdotool(&["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);
    // The menu is a new window of the app's.
    wait_until("the tray menu to open", Duration::from_secs(5), || {
        desktop
            .xdotool(&["search", "--onlyvisible", "--class", "headroom"])
            .lines()
            .count()
            > before.lines().count()
    });
    let menu = desktop.screenshot("tray-menu.png");
    println!("screenshot: {}", menu.display());
    // The first item that can be chosen is the model's Stop (the System, Pool and model lines
    // above it are information only).
    desktop.xdotool(&["key", "Down", "Return"]);
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
    // critical (red, bars full), the defaults bring it back (green). The pixel sampled lies
    // between two of the icon's bars, on its background.
    let between_bars = (x - 4, y);
    let look = || desktop.pixel(between_bars.0, between_bars.1);
    let green = look();
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
            let (r, g, _) = look();
            r > g + 100
        },
    );
    println!("tray icon at critical: {:?}", look());
    app.set_critical_thresholds(false).await;
    wait_until(
        "the normal tray icon again",
        Duration::from_secs(10),
        || look() == green,
    );

    // A second launch hands over to the running app and exits, starting no server.
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

    // The panel: the menu's "Open Headroom…" (its third item that can be chosen, after the
    // model's Stop and Unload all) opens it in the tray's corner, with the gauges and the
    // loaded model; Stop in it unloads the model; it closes when it loses the focus.
    let (status, body) = app
        .call(Method::POST, &format!("/api/memory/models/{SMOLLM2}/load"))
        .await;
    assert_eq!(status, 200, "{body}");
    let rebuilt = || app.stderr().matches("tray menu rebuilt").count();
    let before = rebuilt();
    wait_until(
        "the menu listing the model again",
        Duration::from_secs(10),
        || rebuilt() > before,
    );
    desktop.xdotool(&["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);
    std::thread::sleep(Duration::from_millis(700));
    desktop.xdotool(&["key", "Down", "Down", "Down", "Return"]);
    wait_until("the panel with the model", Duration::from_secs(30), || {
        !desktop
            .windows_named("Headroom panel — System .* · 1 loaded")
            .is_empty()
    });
    let panel = desktop
        .xdotool(&["search", "--onlyvisible", "--name", "Headroom panel"])
        .lines()
        .next()
        .map(str::to_string)
        .expect("the panel's id");
    let geometry = desktop.xdotool(&["getwindowgeometry", &panel]);
    let numbers = |label: &str, separator: char| -> (i32, i32) {
        let text = geometry
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default();
        let mut parts = text.split(separator).filter_map(|n| n.parse().ok());
        (parts.next().unwrap_or(-1), parts.next().unwrap_or(-1))
    };
    let (px, py) = numbers("Position:", ',');
    let (pw, ph) = numbers("Geometry:", 'x');
    println!("panel at {px},{py}, {pw}x{ph}; tray icon at {x},{y}");
    assert_eq!((pw, ph), (360, 420), "{geometry}");
    // The screen is 1280 wide and the tray at its top right, 32 high: the panel's top right
    // corner is the screen's, at most the tray's height down (under it where a window manager
    // reserves the tray's strip).
    assert_eq!(px + pw, 1280, "{geometry}");
    assert!((0..=32).contains(&py), "{geometry}");
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
    let main = desktop
        .xdotool(&["search", "--onlyvisible", "--name", "^Headroom — System"])
        .lines()
        .next()
        .map(str::to_string)
        .expect("the main window's id");
    desktop.xdotool(&["windowfocus", "--sync", &panel]);
    std::thread::sleep(Duration::from_millis(300));
    desktop.xdotool(&["mousemove", "100", "600", "windowfocus", "--sync", &main]);
    wait_until("the panel to close", Duration::from_secs(10), || {
        desktop.windows_named("Headroom panel").is_empty()
    });

    // Quit, from the tray menu's last item, ends the app cleanly.
    desktop.xdotool(&["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);
    std::thread::sleep(Duration::from_millis(700));
    desktop.xdotool(&["key", "Up", "Return"]);
    assert_eq!(app.wait_exit(Duration::from_secs(20), "Quit"), Some(0));
}
