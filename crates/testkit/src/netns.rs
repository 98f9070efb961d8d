//! A private network namespace joined to this one by a veth pair, so that a test can drop the
//! packets between a client and a server with iptables, as a failing network would.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace with one veth pair to the test's namespace: `host_ip` on this side,
/// `ns_ip` inside. Deleted (with its pair) on drop.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

const NEEDS: &str = "a private network namespace needs root (CAP_NET_ADMIN) and iproute2 \
     and iptables (`apt-get install -y iproute2 iptables`; scripts/test.sh installs them)";

impl Netns {
    /// Creates the namespace and its veth pair, on a /30 of 100.64.0.0/10 (shared address
    /// space: never a real network of a test machine) chosen by process id and count.
    pub(crate) fn create() -> Result<Self, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names are at most 15 bytes: "tk" + pid (≤ 7 digits) + side + n (≤ 3).
        let n = n % 1000;
        let name = format!("tk{pid}n{n}");
        let host_if = format!("tk{pid}h{n}");
        let ns_if = format!("tk{pid}i{n}");
        let block = (pid.wrapping_mul(1000).wrapping_add(n) % (1 << 20)) * 4;
        let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + block;
        let (host_ip, ns_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        run("ip", &["netns", "add", &name])?;
        let netns = Self {
            name,
            host_if,
            ns_if,
            host_ip,
            ns_ip,
        };
        netns.join()?;
        Ok(netns)
    }

    fn join(&self) -> Result<(), String> {
        let (name, host_if, ns_if) = (&self.name, &self.host_if, &self.ns_if);
        let host = format!("{}/30", self.host_ip);
        let inside = format!("{}/30", self.ns_ip);
        run(
            "ip",
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", ns_if,
            ],
        )?;
        run("ip", &["link", "set", ns_if, "netns", name])?;
        run("ip", &["addr", "add", &host, "dev", host_if])?;
        run("ip", &["link", "set", host_if, "up"])?;
        run("ip", &["-n", name, "addr", "add", &inside, "dev", ns_if])?;
        run("ip", &["-n", name, "link", "set", ns_if, "up"])?;
        run("ip", &["-n", name, "link", "set", "lo", "up"])
    }

    /// The address of the namespace's side.
    pub(crate) fn ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// `ip netns exec <name>`: the command prefix that runs a program inside (the program
    /// keeps the process id of the `ip` command, which execs it).
    pub(crate) fn exec_prefix(&self) -> [&str; 3] {
        ["netns", "exec", &self.name]
    }

    /// Drops `percent` % of the packets in and out of the namespace (100: all of them),
    /// chosen at random per packet; replaces an earlier rule.
    pub(crate) fn drop_packets(&self, percent: u8) -> Result<(), String> {
        self.pass_packets()?;
        let probability = format!("{:.2}", f64::from(percent.min(100)) / 100.0);
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            let mut args = vec![
                "netns",
                "exec",
                &self.name,
                "iptables",
                "-A",
                chain,
                dir,
                &self.ns_if,
            ];
            if percent < 100 {
                args.extend([
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                ]);
            }
            args.extend(["-j", "DROP"]);
            run("ip", &args)?;
        }
        Ok(())
    }

    /// Removes the rules of [`drop_packets`](Self::drop_packets).
    pub(crate) fn pass_packets(&self) -> Result<(), String> {
        for chain in ["INPUT", "OUTPUT"] {
            run(
                "ip",
                &["netns", "exec", &self.name, "iptables", "-F", chain],
            )?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Runs a command, its stderr in the error.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}; {NEEDS}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}; {NEEDS}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
