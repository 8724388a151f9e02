//! What Headroom costs while it waits: resident memory and CPU with no model loaded, sampled
//! every second, headless and, where there is a display server to be had, as the desktop app
//! with its window open, closed, opened again (by a second launch, as a user would) and closed
//! again. Each counts the process and its children (the window process and WebKit's helpers).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::{mb, Context};
use crate::process::{cpu_seconds, rss, rss_anon, Guarded};
use crate::report::{Goal, Row};
use crate::servers::{Headroom, HeadroomLaunch};
use crate::stats::Figure;

/// CPU is averaged over windows of this length; the windows' spread is the figure's.
const WINDOW: Duration = Duration::from_secs(10);

/// Closes the X windows named on the command line as a window manager's close button does.
const CLOSE_WINDOWS: &str = include_str!("../../../e2e/x11/close_windows.py");

pub async fn run(cx: &Context, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    // The backend alone (built without the `gui` feature), then the app's binary run with
    // `--headless`: the same server, but linked against WebKit and GTK, whose pages count.
    let mut binaries = vec![("app binary --headless", &cx.headroom)];
    if let Some(headless) = &cx.headless_build {
        binaries.insert(0, ("headless build", headless));
    }
    for (label, binary) in binaries {
        let server = Headroom::start(HeadroomLaunch {
            binary,
            models_dir: &cx.models_dir,
            shape: cx.shape(1),
            cgroups: &[],
            desktop: None,
            env: &[],
        })
        .await?;
        let (rss_mb, cpu) = sample(server.pid(), cx.idle_seconds).await?;
        let private = mb(rss_anon(server.pid())? as f64);
        drop(server);
        rows.push(
            Row::new(format!("idle, {label}: RSS"), "MB")
                .headroom(Figure::of(&rss_mb))
                .goal(Goal::AtMost(30.0))
                .note(format!(
                    "no model, {} s; {private:.1} MB of it private (RssAnon), the rest file pages",
                    cx.idle_seconds
                )),
        );
        rows.push(
            Row::new(format!("idle, {label}: CPU"), "%")
                .headroom(Figure::of(&cpu))
                .goal(Goal::AtMost(0.1)),
        );
    }

    match desktop(cx).await {
        Ok(figures) => figures.rows(rows),
        Err(why) => eprintln!("idle, desktop app: not measured: {why:#}"),
    }
    Ok(())
}

/// The desktop app through one open–close–open–close cycle of its window.
struct DesktopFigures {
    open: Vec<f64>,
    closed: (Vec<f64>, Vec<f64>),
    reopen_seconds: f64,
    reopened: Vec<f64>,
    closed_again: Vec<f64>,
}

impl DesktopFigures {
    fn rows(self, rows: &mut Vec<Row>) {
        // A menu-bar app that guards memory must be light when nobody looks at it (issue 25).
        let light = Goal::AtMost(40.0);
        let note = "the app and its child processes, under Xvfb";
        rows.push(
            Row::new("idle, desktop app, window open: RSS", "MB")
                .headroom(Figure::of(&self.open))
                .note(format!(
                    "{note}; the window process and WebKit's helpers included"
                )),
        );
        rows.push(
            Row::new("idle, desktop app, window closed: RSS", "MB")
                .headroom(Figure::of(&self.closed.0))
                .goal(light)
                .note(note),
        );
        rows.push(
            Row::new("idle, desktop app, window closed: CPU", "%")
                .headroom(Figure::of(&self.closed.1)),
        );
        rows.push(
            Row::new("desktop app, second launch to window shown", "s")
                .headroom(Figure::of(&[self.reopen_seconds]))
                .note("a new window process and webview, the page loaded"),
        );
        rows.push(
            Row::new("idle, desktop app, window reopened: RSS", "MB")
                .headroom(Figure::of(&self.reopened))
                .note(note),
        );
        rows.push(
            Row::new("idle, desktop app, window closed again: RSS", "MB")
                .headroom(Figure::of(&self.closed_again))
                .goal(light)
                .note(note),
        );
    }
}

/// Samples RSS every second and CPU per window for `seconds`, after a few seconds to settle.
async fn sample(pid: u32, seconds: u64) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut rss_mb, mut cpu) = (Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut window = (Instant::now(), tree_sum(pid, cpu_seconds)?);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_mb.push(mb(tree_sum(pid, rss)? as f64));
        let now = Instant::now();
        if now - window.0 >= WINDOW {
            // One reading ends this window and starts the next, so no CPU time falls between.
            let used = tree_sum(pid, cpu_seconds)?;
            cpu.push(100.0 * (used - window.1) / (now - window.0).as_secs_f64());
            window = (now, used);
        }
    }
    Ok((rss_mb, cpu))
}

/// `pid` and every process below it.
fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The parent is the second field after the command name's closing parenthesis.
            let parent = stat
                .rfind(')')
                .and_then(|at| stat[at + 1..].split_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if let Some(parent) = parent {
                parents.push((child, parent));
            }
        }
    }
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    found
}

/// `read` of `pid` plus `read` of every process below it that is still there to read: the
/// root must answer, a helper that exits in between counts as nothing.
fn tree_sum<T: std::iter::Sum<T> + std::ops::Add<Output = T>>(
    pid: u32,
    read: impl Fn(u32) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let below: T = tree(pid).iter().skip(1).filter_map(|p| read(*p).ok()).sum();
    Ok(read(pid)? + below)
}

/// Starts the desktop app under a private Xvfb and session bus, and samples it with its window
/// open, closed (as a window manager closes it), opened again by a second launch, and closed
/// again.
async fn desktop(cx: &Context) -> anyhow::Result<DesktopFigures> {
    for tool in ["Xvfb", "dbus-daemon", "xdotool", "python3"] {
        if !Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()?
            .success()
        {
            bail!("{tool} is missing");
        }
    }
    let number = 150 + std::process::id() % 100;
    let display = format!(":{number}");
    let _xvfb = Guarded(
        Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stderr(Stdio::null())
            .spawn()
            .context("Xvfb")?,
    );
    let socket = std::path::PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
    wait_until("the X server", Duration::from_secs(10), || socket.exists()).await?;
    let mut bus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .spawn()
        .context("dbus-daemon")?;
    let address = {
        use std::io::BufRead;
        let stdout = bus.stdout.take().context("the bus's address")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        line.trim().to_string()
    };
    let _bus = Guarded(bus);
    let env = [
        ("DISPLAY".to_string(), display.clone()),
        ("DBUS_SESSION_BUS_ADDRESS".to_string(), address),
    ];
    let app = Headroom::start(HeadroomLaunch {
        binary: &cx.headroom,
        models_dir: &cx.models_dir,
        shape: cx.shape(1),
        cgroups: &[],
        desktop: Some(&env),
        env: &[],
    })
    .await?;
    let windows = || {
        Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", "^Headroom"])
            .env("DISPLAY", &display)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let shown = || async {
        wait_until("the app's window", Duration::from_secs(30), || {
            !windows().is_empty()
        })
        .await?;
        // Let the page load and draw, as a user would have.
        tokio::time::sleep(Duration::from_secs(3)).await;
        anyhow::Ok(())
    };
    let close = || async {
        close_windows(&windows(), &display)?;
        wait_until("the window to close", Duration::from_secs(10), || {
            windows().is_empty()
        })
        .await
    };
    let short = 5;
    shown().await?;
    let open = sample(app.pid(), short).await?.0;
    close().await?;
    let closed = sample(app.pid(), cx.idle_seconds).await?;
    // A second launch: it hands over to the running app, which opens its window again.
    let scratch = tempfile::tempdir()?;
    let started = Instant::now();
    let second = Command::new(&cx.headroom)
        .args(["--port", "0", "--data-dir"])
        .arg(scratch.path().join("data"))
        .arg("--config")
        .arg(scratch.path().join("config.toml"))
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .status()
        .context("second launch")?;
    if !second.success() {
        bail!("the second launch failed: {second}");
    }
    wait_until("the window again", Duration::from_secs(30), || {
        !windows().is_empty()
    })
    .await?;
    let reopen_seconds = started.elapsed().as_secs_f64();
    shown().await?;
    let reopened = sample(app.pid(), short).await?.0;
    close().await?;
    let closed_again = sample(app.pid(), short).await?.0;
    if !app.stderr().is_empty() {
        eprintln!("the app's log:\n{}", app.stderr());
    }
    Ok(DesktopFigures {
        open,
        closed,
        reopen_seconds,
        reopened,
        closed_again,
    })
}

/// Closes the X windows `ids` as a window manager's close button does.
fn close_windows(ids: &[String], display: &str) -> anyhow::Result<()> {
    // Debian's python3-xlib is for Debian's Python, which a pyenv or venv on PATH may hide.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let closed = Command::new(python)
        .arg("-c")
        .arg(CLOSE_WINDOWS)
        .args(ids)
        .env("DISPLAY", display)
        .status()
        .context("python3")?;
    if !closed.success() {
        bail!("could not close the window (python3-xlib missing?)");
    }
    Ok(())
}

async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
