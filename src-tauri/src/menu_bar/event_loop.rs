//! The menu bar's main loop: what owns the tray and the window process, fed `Action`s through a
//! `Proxy` from the other threads.
//!
//! On macOS it is AppKit's run loop (through `tao`), which the status item needs on the main
//! thread. Elsewhere the tray is a D-Bus service with no toolkit (`tray::sni`), and a channel
//! is all the loop needs.

use super::Action;

#[cfg(target_os = "macos")]
pub struct EventLoop(tao::event_loop::EventLoop<Action>);

#[cfg(not(target_os = "macos"))]
pub struct EventLoop {
    sender: std::sync::mpsc::Sender<Action>,
    receiver: std::sync::mpsc::Receiver<Action>,
}

/// Sends actions to the loop from any thread.
#[derive(Clone)]
pub struct Proxy(
    #[cfg(target_os = "macos")] tao::event_loop::EventLoopProxy<Action>,
    #[cfg(not(target_os = "macos"))] std::sync::mpsc::Sender<Action>,
);

impl Proxy {
    /// False once the loop has ended.
    pub fn send(&self, action: Action) -> bool {
        #[cfg(target_os = "macos")]
        return self.0.send_event(action).is_ok();
        #[cfg(not(target_os = "macos"))]
        return self.0.send(action).is_ok();
    }
}

impl EventLoop {
    /// On macOS this makes the app an accessory: no Dock icon, no app menu.
    #[cfg(target_os = "macos")]
    pub fn new() -> Self {
        use tao::platform::macos::{ActivationPolicy, EventLoopExtMacOS as _};
        let mut event_loop = tao::event_loop::EventLoopBuilder::<Action>::with_user_event().build();
        event_loop.set_activation_policy(ActivationPolicy::Accessory);
        Self(event_loop)
    }

    #[cfg(not(target_os = "macos"))]
    pub fn new() -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        Self { sender, receiver }
    }

    pub fn proxy(&self) -> Proxy {
        #[cfg(target_os = "macos")]
        return Proxy(self.0.create_proxy());
        #[cfg(not(target_os = "macos"))]
        return Proxy(self.sender.clone());
    }

    /// Hands every action to `handle` until it returns true (Quit). On macOS the process then
    /// exits from inside the loop, as AppKit's does; elsewhere this returns.
    #[cfg(target_os = "macos")]
    pub fn run(self, mut handle: impl FnMut(Action) -> bool + 'static) {
        use tao::event::Event;
        use tao::event_loop::ControlFlow;
        self.0.run(move |event, _, control_flow| {
            *control_flow = ControlFlow::Wait;
            if let Event::UserEvent(action) = event {
                if handle(action) {
                    *control_flow = ControlFlow::Exit;
                }
            }
        })
    }

    #[cfg(not(target_os = "macos"))]
    pub fn run(self, mut handle: impl FnMut(Action) -> bool + 'static) {
        // The loop's own sender goes, so it ends if every proxy has gone too.
        drop(self.sender);
        while let Ok(action) = self.receiver.recv() {
            if handle(action) {
                return;
            }
        }
    }
}
