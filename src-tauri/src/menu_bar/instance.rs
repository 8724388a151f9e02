//! One menu bar per user and desktop session. The first launch listens on a Unix socket named
//! for the user and the display; a second launch finds it there, asks it to show its window,
//! and exits rather than start a second server and a second icon.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::window_request::{Page, WindowRequest};

/// The first launch's end of the socket.
pub struct Instance {
    listener: UnixListener,
}

/// Claims the session: `Some` for the first launch; `None` when another was found and asked to
/// show its window, and this one should exit.
pub fn claim() -> std::io::Result<Option<Instance>> {
    let path = socket_path();
    if let Ok(mut first) = UnixStream::connect(&path) {
        let request = WindowRequest::Show(Page::Main).to_line();
        first.write_all(format!("{request}\n").as_bytes())?;
        tracing::info!(socket = %path.display(), "Headroom is already running: asked it to show its window");
        return Ok(None);
    }
    // Nobody answers: what is there is left from a launch that ended without cleaning up.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    Ok(Some(Instance { listener }))
}

impl Instance {
    /// Hands each request a later launch makes to `on_request`, on a thread of its own.
    pub fn listen(self, on_request: impl Fn(WindowRequest) + Send + 'static) {
        std::thread::spawn(move || {
            for stream in self.listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                // One short line; a peer that sends more, or nothing, is not waited for.
                let mut line = String::new();
                let _ = BufReader::new(stream.take(256)).read_line(&mut line);
                match WindowRequest::parse(&line) {
                    Some(request) => on_request(request),
                    None => tracing::warn!(?line, "a later launch sent an unknown request"),
                }
            }
        });
    }
}

/// In the user's runtime folder (`XDG_RUNTIME_DIR`), else the temporary one (per user on
/// macOS), named for the user and the display so each desktop session has its own.
fn socket_path() -> PathBuf {
    let folder = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let display = [var("WAYLAND_DISPLAY"), var("DISPLAY")].join("");
    // The user by name, else (a service started without a login's variables) by the home
    // folder's owner.
    let user = [var("USER"), var("LOGNAME")]
        .into_iter()
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt as _;
            std::env::var_os("HOME")
                .and_then(|home| std::fs::metadata(home).ok())
                .map_or_else(String::new, |home| format!("uid{}", home.uid()))
        });
    folder.join(socket_name(&user, &display))
}

/// `headroom-<user>-<display>.sock`, each part reduced to characters safe in a file name.
fn socket_name(user: &str, display: &str) -> String {
    let safe = |text: &str| -> String {
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(32)
            .collect()
    };
    format!("headroom-{}-{}.sock", safe(user), safe(display))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_per_user_and_display() {
        assert_eq!(socket_name("ann", ":0"), "headroom-ann-_0.sock");
        assert_eq!(socket_name("ann", ":90"), "headroom-ann-_90.sock");
        assert_eq!(
            socket_name("bob", "wayland-0"),
            "headroom-bob-wayland_0.sock"
        );
        // macOS sets neither variable: one per user.
        assert_eq!(socket_name("ann", ""), "headroom-ann-.sock");
        // Nothing in a name leaves the folder.
        assert_eq!(socket_name("../x", "/tmp/y"), "headroom-___x-_tmp_y.sock");
    }
}
