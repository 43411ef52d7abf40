//! Two network namespaces, `appliance` and `outside`, joined by a veth pair with 10.x
//! addresses that exist only inside them. Names and subnet are unique per process and
//! pair; everything is removed on drop, also when a test panics.
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::util::run;

static NEXT: AtomicU8 = AtomicU8::new(0);

/// The namespace pair. Processes in it are started with [`NetnsPair::exec`].
pub struct NetnsPair {
    /// Where the service (or probe) runs.
    pub appliance: String,
    /// Where the honeypot and clients run.
    pub outside: String,
    /// The appliance side's address.
    pub appliance_ip: Ipv4Addr,
    /// The outside side's address (honeypot, DNS responder).
    pub outside_ip: Ipv4Addr,
}

impl NetnsPair {
    /// Creates both namespaces with loopback up and the veth pair addressed
    /// `10.(200+n).(pid % 256).1/24` (appliance) and `.2/24` (outside). A resolver file
    /// in `/etc/netns/APPLIANCE/` points DNS of processes in `appliance` at `outside`.
    pub fn new() -> NetnsPair {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100_000, n);
        let net = [10, 200 + n % 50, (pid % 256) as u8];
        let pair = NetnsPair {
            appliance: format!("alk-app-{tag}"),
            outside: format!("alk-out-{tag}"),
            appliance_ip: Ipv4Addr::new(net[0], net[1], net[2], 1),
            outside_ip: Ipv4Addr::new(net[0], net[1], net[2], 2),
        };
        // From here on, Drop cleans up whatever was created.
        for ns in [&pair.appliance, &pair.outside] {
            run(Command::new("ip").args(["netns", "add", ns]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        let (va, vo) = (format!("va{tag}"), format!("vo{tag}"));
        run(Command::new("ip").args([
            "link",
            "add",
            &va,
            "netns",
            &pair.appliance,
            "type",
            "veth",
            "peer",
            "name",
            &vo,
            "netns",
            &pair.outside,
        ]));
        for (ns, dev, ip) in [
            (&pair.appliance, &va, pair.appliance_ip),
            (&pair.outside, &vo, pair.outside_ip),
        ] {
            run(Command::new("ip").args([
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]));
            run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
        }
        let etc = pair.etc_dir();
        std::fs::create_dir_all(&etc).expect("mkdir /etc/netns/NS");
        std::fs::write(
            etc.join("resolv.conf"),
            format!(
                "nameserver {}\noptions timeout:1 attempts:1\n",
                pair.outside_ip
            ),
        )
        .expect("write resolv.conf");
        pair
    }

    fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.appliance)
    }

    /// `ip netns exec NS PROGRAM` with piped stdout/stderr and no stdin.
    pub fn exec(&self, ns: &str, program: &str) -> Command {
        exec(ns, program)
    }
}

/// `ip netns exec NS PROGRAM` with piped stdout/stderr and no stdin.
pub fn exec(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A namespace with nothing but loopback, as systemd's `PrivateNetwork=yes` gives a
/// service. Removed on drop.
pub struct LoneNetns {
    /// Its name.
    pub name: String,
}

impl LoneNetns {
    /// Creates it, with `lo` up.
    pub fn new() -> LoneNetns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = LoneNetns {
            name: format!("alk-lone-{}{n}", std::process::id() % 100_000),
        };
        run(Command::new("ip").args(["netns", "add", &ns.name]));
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }
}

impl Drop for LoneNetns {
    fn drop(&mut self) {
        kill_and_delete(&self.name);
    }
}

fn kill_and_delete(ns: &str) {
    // Kill what still runs inside (a panicking test may leave its server).
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.appliance, &self.outside] {
            kill_and_delete(ns);
        }
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}
