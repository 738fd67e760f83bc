//! A tool's network. Its namespace has only loopback; the node (root) binds listeners inside it
//! before the tool starts:
//! - one per loopback endpoint of the org's credentials (`http://127.0.0.1:5000` of a test's fake
//!   AWS, a kube API on loopback), forwarded to that port on the host's loopback, unless the port
//!   is one of the node's own listeners or stores;
//! - an HTTP proxy (`HTTPS_PROXY`) that opens `CONNECT` tunnels and forwards plain HTTP requests
//!   to the outside world, refusing loopback, link-local (the cloud metadata service, which
//!   would hand out the node's own role), multicast, unspecified addresses, and the addresses of
//!   the node and its stores. It resolves names itself and connects to the address it checked,
//!   so a name that re-resolves elsewhere cannot slip past the check.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The proxy's port inside the sandbox (a loopback endpoint on this port is not forwarded).
pub const PROXY_PORT: u16 = 3128;
/// Largest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a tool's connections may reach.
#[derive(Clone, Debug, Default)]
pub struct NetPolicy {
    /// Addresses never reached: the node's own (every local interface) and its stores'
    /// (database, Redis, Vault, S3, cluster peers).
    pub denied_addrs: Vec<IpAddr>,
    /// Loopback ports never forwarded: the node's listeners and stores on loopback.
    pub denied_ports: Vec<u16>,
}

impl NetPolicy {
    /// Whether the proxy may connect to `addr`.
    pub fn allows(&self, addr: &SocketAddr) -> Result<(), String> {
        let ip = canonical(addr.ip());
        let kind = match ip {
            IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
            IpAddr::V4(v4) if v4.is_link_local() => Some("link-local (metadata service)"),
            IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => Some("multicast"),
            IpAddr::V4(v4) if v4.is_unspecified() => Some("unspecified"),
            IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
            IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
            IpAddr::V6(v6) if v6.is_multicast() || v6.is_unspecified() => Some("multicast"),
            // fd00:ec2::254 is EC2's IPv6 metadata address.
            IpAddr::V6(v6) if v6.segments()[..2] == [0xfd00, 0x0ec2] => Some("metadata service"),
            _ => None,
        };
        if let Some(kind) = kind {
            return Err(format!("{kind} addresses are closed to tools"));
        }
        if self.denied_addrs.iter().any(|d| canonical(*d) == ip) {
            return Err("the node's own addresses and stores are closed to tools".into());
        }
        Ok(())
    }

    /// Whether a loopback endpoint on `port` is forwarded into the sandbox.
    pub fn forwards(&self, port: u16) -> bool {
        port != PROXY_PORT && port != 0 && !self.denied_ports.contains(&port)
    }
}

/// IPv4-mapped IPv6 addresses compared as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Every address of this host's interfaces (a tool must not reach the node through any of them).
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                match (*sa).sa_family as i32 {
                    libc::AF_INET => {
                        let a = &*(sa as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let a = &*(sa as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(a.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// The listeners of one sandbox; dropping it closes them and ends their connections.
pub struct Attached {
    _tasks: JoinSet<()>,
}

/// Binds the proxy and the forwarded endpoints inside the network namespace of `pid`.
pub async fn attach(
    policy: Arc<NetPolicy>,
    pid: u32,
    endpoints: &[(String, u16)],
) -> io::Result<Attached> {
    let mut forwards: Vec<u16> = Vec::new();
    for (host, port) in endpoints {
        if is_loopback_host(host) {
            if policy.forwards(*port) && !forwards.contains(port) {
                forwards.push(*port);
            } else if !policy.forwards(*port) {
                tracing::warn!(
                    port,
                    "a credential names a loopback port of the node: not forwarded"
                );
            }
        }
    }
    let mut ports = vec![PROXY_PORT];
    ports.extend(&forwards);
    let listeners = tokio::task::spawn_blocking(move || bind_in(pid, &ports))
        .await
        .map_err(io::Error::other)??;
    let mut tasks = JoinSet::new();
    let mut it = listeners.into_iter();
    let proxy = TcpListener::from_std(it.next().expect("the proxy listener is first"))?;
    let p = policy.clone();
    tasks.spawn(accept_loop(proxy, move |s| {
        let p = p.clone();
        async move { proxy_conn(s, p).await }
    }));
    for (l, port) in it.zip(forwards) {
        let l = TcpListener::from_std(l)?;
        tasks.spawn(accept_loop(l, move |mut s| async move {
            match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(mut up) => {
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                }
                Err(e) => tracing::debug!(port, error = %e, "forwarded endpoint unreachable"),
            }
        }));
    }
    Ok(Attached { _tasks: tasks })
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>()
            .map(|ip| canonical(ip).is_loopback())
            .unwrap_or(false)
}

/// Listeners on `[::]:port` (both families) created inside the namespace: a thread of our own
/// enters it, binds, and ends; the sockets stay in the namespace they were made in.
fn bind_in(pid: u32, ports: &[u16]) -> io::Result<Vec<std::net::TcpListener>> {
    let ports = ports.to_vec();
    std::thread::spawn(move || -> io::Result<Vec<std::net::TcpListener>> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        // SAFETY: setns on this thread only; the thread ends right after binding.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        ports
            .iter()
            .map(|p| {
                let l = std::net::TcpListener::bind(("::", *p))
                    .or_else(|_| std::net::TcpListener::bind(("0.0.0.0", *p)))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .collect()
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

async fn accept_loop<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => { conns.spawn(handle(s)); }
                Err(_) => return,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One proxied connection: `CONNECT host:port` or an absolute-form HTTP request.
async fn proxy_conn(mut client: TcpStream, policy: Arc<NetPolicy>) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(h)) => h,
        _ => return,
    };
    let (method, target) = match request_line(&head.bytes[..head.end]) {
        Some(x) => x,
        None => return refuse(&mut client, 400, "not an HTTP proxy request").await,
    };
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let authority = if connect {
        Some(target.clone())
    } else {
        target
            .strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or("").to_string())
    };
    let Some((host, port)) = authority
        .as_deref()
        .and_then(|a| split_authority(a, !connect))
    else {
        return refuse(
            &mut client,
            400,
            "expected CONNECT host:port or http://host/",
        )
        .await;
    };
    let addr = match resolve_allowed(&policy, &host, port).await {
        Ok(a) => a,
        Err(why) => {
            tracing::info!(host = %host, port, reason = %why, "tool connection refused");
            return refuse(&mut client, 403, &why).await;
        }
    };
    let mut up = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        _ => return refuse(&mut client, 502, "cannot connect").await,
    };
    if connect {
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        if head.bytes.len() > head.end && up.write_all(&head.bytes[head.end..]).await.is_err() {
            return;
        }
    } else if up.write_all(&head.bytes).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}

/// Resolves `host` and returns an address to connect to, refusing if any address it resolves
/// to is closed (a name must not reach a closed address through one of its records).
async fn resolve_allowed(policy: &NetPolicy, host: &str, port: u16) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| format!("cannot resolve {host}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("cannot resolve {host}"));
    }
    for a in &addrs {
        policy.allows(a)?;
    }
    Ok(addrs[0])
}

fn split_authority(a: &str, default_http: bool) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (a.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None if default_http => 80,
        None => return None,
    };
    (!host.is_empty()).then_some((host, port))
}

struct Head {
    bytes: Vec<u8>,
    /// Where the head ends (after the blank line); more bytes may follow.
    end: usize,
}

async fn read_head(s: &mut TcpStream) -> io::Result<Head> {
    let mut bytes = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        bytes.extend_from_slice(&buf[..n]);
        if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Head { end: i + 4, bytes });
        }
        if bytes.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

fn request_line(head: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    parts
        .next()?
        .starts_with("HTTP/")
        .then_some((method, target))
}

async fn refuse(client: &mut TcpStream, status: u16, why: &str) {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        _ => "Bad Gateway",
    };
    let body = format!("{why}\n");
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(msg.as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_addresses() {
        let p = NetPolicy {
            denied_addrs: vec!["10.0.0.5".parse().unwrap()],
            denied_ports: vec![5432],
        };
        for a in [
            "127.0.0.1:80",
            "[::1]:80",
            "169.254.169.254:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "10.0.0.5:443",
            "0.0.0.0:80",
            "[fd00:ec2::254]:80",
            "224.0.0.1:80",
        ] {
            assert!(p.allows(&a.parse().unwrap()).is_err(), "{a}");
        }
        for a in ["10.0.0.6:443", "192.0.2.10:443", "[2001:db8::1]:443"] {
            assert!(p.allows(&a.parse().unwrap()).is_ok(), "{a}");
        }
        assert!(!p.forwards(5432));
        assert!(!p.forwards(PROXY_PORT));
        assert!(p.forwards(5000));
    }

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("example.com:443", false),
            Some(("example.com".into(), 443))
        );
        assert_eq!(
            split_authority("[::1]:8080", false),
            Some(("::1".into(), 8080))
        );
        assert_eq!(
            split_authority("example.com", true),
            Some(("example.com".into(), 80))
        );
        assert_eq!(split_authority("example.com", false), None);
        assert!(is_loopback_host("localhost") && is_loopback_host("[::1]"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
