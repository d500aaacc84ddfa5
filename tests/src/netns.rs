//! A network namespace of the test's own, joined to this one by a veth pair: what an upstream
//! beyond the gateway's host sees of the gateway's source address. On loopback every address is
//! local and the kernel picks the source by rules of its own; across a link, the source is the
//! host side's primary address unless the socket is bound to another. Needs root (`ip netns`);
//! the namespace and its link go when the value is dropped.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace with one link to the test's namespace: the host side holds `host[0]` (its primary
/// address) and `host[1]`, the namespace side `inside`, all in one /24.
pub struct Netns {
    name: String,
    link: String,
    /// The host side's addresses, the primary first.
    pub host: [Ipv4Addr; 2],
    /// The namespace side's address.
    pub inside: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("the ip command runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Netns {
    /// Makes the namespace and its link (a subnet of 10.0.0.0/8 chosen by process and count, so
    /// that test processes running at once do not collide).
    pub fn create() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("pylon-test-{pid}-{n}");
        // Interface names have at most 15 characters.
        let link = format!("pyl{}h{n}", pid % 100_000);
        let peer = format!("pyl{}n{n}", pid % 100_000);
        let (b, c) = (u8::try_from(pid % 200).unwrap() + 20, u8::try_from((pid / 200 + n) % 250).unwrap());
        let host = [Ipv4Addr::new(10, b, c, 1), Ipv4Addr::new(10, b, c, 2)];
        let inside = Ipv4Addr::new(10, b, c, 3);
        ip(&["netns", "add", &name]);
        let ns = Netns { name, link, host, inside };
        ip(&["link", "add", &ns.link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/24", host[0]), "dev", &ns.link]);
        ip(&["addr", "add", &format!("{}/24", host[1]), "dev", &ns.link]);
        ip(&["link", "set", &ns.link, "up"]);
        ip(&["-n", &ns.name, "addr", "add", &format!("{inside}/24"), "dev", &peer]);
        ip(&["-n", &ns.name, "link", "set", &peer, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A listening socket on `inside`, on an ephemeral port, made inside the namespace (a thread
    /// joins it to make the socket, which stays there).
    pub fn listen(&self) -> std::net::TcpListener {
        let path = format!("/run/netns/{}", self.name);
        let inside = self.inside;
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the namespace exists");
            // Only this thread joins it.
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            std::net::TcpListener::bind((inside, 0)).expect("listen inside the namespace")
        })
        .join()
        .expect("the namespace thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Removing the namespace removes its end of the link, and so the link.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.link]).stderr(std::process::Stdio::null()).status();
    }
}
