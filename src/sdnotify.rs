//! The systemd notify protocol (`Type=notify`): one datagram per message to `$NOTIFY_SOCKET`.
//! Failures are logged by the caller and never fatal: storekeeper also runs outside systemd.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where to send notifications; `None` outside systemd.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: PathBuf,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; abstract sockets (`@name`) are supported.
    pub fn from_env() -> Option<Notifier> {
        let s = std::env::var_os("NOTIFY_SOCKET")?;
        if s.is_empty() {
            return None;
        }
        Some(Notifier {
            socket: PathBuf::from(s),
        })
    }

    /// Sends one message, e.g. `READY=1\nSTATUS=...`. Never blocks: it runs on the async
    /// runtime, and a reader that stopped reading (a full socket queue) must not stall a worker
    /// thread; such a message fails with `WouldBlock` and is logged by the caller.
    pub fn send(&self, msg: &str) -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        let path = self.socket.to_string_lossy();
        if let Some(name) = path.strip_prefix('@') {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                sock.send_to_addr(msg.as_bytes(), &addr)?;
                return Ok(());
            }
            #[cfg(not(target_os = "linux"))]
            return Err(std::io::Error::other(format!(
                "abstract socket {name} needs Linux"
            )));
        }
        sock.send_to(msg.as_bytes(), &self.socket)?;
        Ok(())
    }

    pub fn ready(&self, status: &str) -> std::io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    pub fn status(&self, status: &str) -> std::io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    pub fn stopping(&self) -> std::io::Result<()> {
        self.send("STOPPING=1\nSTATUS=draining in-flight helm operations")
    }

    pub fn watchdog(&self) -> std::io::Result<()> {
        self.send("WATCHDOG=1")
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC`, if set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_as_datagrams() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path)?;
        server.set_read_timeout(Some(Duration::from_secs(5)))?;
        let n = Notifier { socket: path };
        n.ready("3 stores\nready")?;
        n.watchdog()?;
        n.stopping()?;
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf)?;
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=3 stores ready");
        let len = server.recv(&mut buf)?;
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        let len = server.recv(&mut buf)?;
        assert!(buf[..len].starts_with(b"STOPPING=1"));
        Ok(())
    }
}
