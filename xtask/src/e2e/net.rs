//! The test network: a "host" namespace (where the booted test host lives) and an "internet"
//! namespace joined by a veth pair, with documentation addresses only, and the test internet
//! host serving HTTP, HTTPS (certificate from a test proxy CA) and the package repository.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use super::proc::{guard, kill_and_reap, run, Guard};

pub const INET_V4: &str = "192.0.2.1";
pub const HOST_V4: &str = "192.0.2.10";
pub const INET_V6: &str = "2001:db8::1";
pub const HOST_V6: &str = "2001:db8::10";
/// The name the test host resolves to the internet host (through its /etc/hosts).
pub const INET_NAME: &str = "internet.test";
/// What the internet host answers on `/hello`, over HTTP and HTTPS.
pub const HELLO_BODY: &str = "pipelock-containment e2e: hello from the test internet";

const PREFIX: &str = "plc-e2e";

/// The two namespaces and the veth pair; deleted on drop.
pub struct TestNet {
    pub host_ns: String,
    pub inet_ns: String,
    _guard: Guard,
}

impl TestNet {
    pub fn host_ns_path(&self) -> String {
        format!("/run/netns/{}", self.host_ns)
    }
}

/// Deletes namespaces left by earlier runs of this harness whose process is gone.
pub fn remove_stale() {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else {
            continue;
        };
        let Some(pid) = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Utf8Path::new(&format!("/proc/{pid}")).exists() {
            println!("    removing stale namespace {name} (its run, pid {pid}, is gone)");
            let _ = run(Command::new("ip").args(["netns", "delete", name]));
        }
    }
}

pub fn create() -> Result<TestNet> {
    let pid = std::process::id();
    let host_ns = format!("{PREFIX}-host-{pid}");
    let inet_ns = format!("{PREFIX}-inet-{pid}");
    let (vh, vi) = (format!("pe2e{pid}h"), format!("pe2e{pid}i"));
    let (h2, i2) = (host_ns.clone(), inet_ns.clone());
    let g = guard("network namespaces", move || {
        let _ = run(Command::new("ip").args(["netns", "delete", &h2]));
        let _ = run(Command::new("ip").args(["netns", "delete", &i2]));
    });
    let ip = |args: &[&str]| run(Command::new("ip").args(args));
    ip(&["netns", "add", &host_ns])?;
    ip(&["netns", "add", &inet_ns])?;
    // Created directly inside the host namespace: nothing appears in the initial namespace.
    ip(&[
        "-n", &host_ns, "link", "add", &vh, "type", "veth", "peer", "name", &vi,
    ])?;
    ip(&["-n", &host_ns, "link", "set", &vi, "netns", &inet_ns])?;
    ip(&[
        "-n",
        &host_ns,
        "addr",
        "add",
        &format!("{HOST_V4}/24"),
        "dev",
        &vh,
    ])?;
    ip(&[
        "-n",
        &inet_ns,
        "addr",
        "add",
        &format!("{INET_V4}/24"),
        "dev",
        &vi,
    ])?;
    ip(&[
        "-n",
        &host_ns,
        "-6",
        "addr",
        "add",
        &format!("{HOST_V6}/64"),
        "dev",
        &vh,
        "nodad",
    ])?;
    ip(&[
        "-n",
        &inet_ns,
        "-6",
        "addr",
        "add",
        &format!("{INET_V6}/64"),
        "dev",
        &vi,
        "nodad",
    ])?;
    for (ns, dev) in [(&host_ns, &vh), (&inet_ns, &vi)] {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    Ok(TestNet {
        host_ns,
        inet_ns,
        _guard: g,
    })
}

/// The test "proxy CA" and the internet host's certificate it signs.
pub struct Certs {
    pub ca: camino::Utf8PathBuf,
    pub server_cert: camino::Utf8PathBuf,
    pub server_key: camino::Utf8PathBuf,
}

pub fn make_certs(dir: &Utf8Path) -> Result<Certs> {
    fs::create_dir_all(dir)?;
    let p = |n: &str| dir.join(n);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args([
            "-keyout",
            p("ca-key.pem").as_str(),
            "-out",
            p("ca.pem").as_str(),
        ])
        .args([
            "-days",
            "3",
            "-subj",
            "/CN=pipelock-containment e2e proxy CA",
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]))?;
    run(Command::new("openssl")
        .arg("req")
        .args(ec)
        .args([
            "-keyout",
            p("server-key.pem").as_str(),
            "-out",
            p("server.csr").as_str(),
        ])
        .args(["-subj", &format!("/CN={INET_NAME}")]))?;
    fs::write(
        p("server.ext"),
        format!(
            "subjectAltName=DNS:{INET_NAME},IP:{INET_V4},IP:{INET_V6}\n\
             basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-in", p("server.csr").as_str()])
        .args([
            "-CA",
            p("ca.pem").as_str(),
            "-CAkey",
            p("ca-key.pem").as_str(),
        ])
        .args([
            "-CAcreateserial",
            "-days",
            "3",
            "-out",
            p("server.pem").as_str(),
        ])
        .args(["-extfile", p("server.ext").as_str()]))?;
    Ok(Certs {
        ca: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server-key.pem"),
    })
}

const SERVER_PY: &str = r#"
import functools, http.server, socket, socketserver, ssl, sys, threading
docroot, cert, key, body = sys.argv[1], sys.argv[2], sys.argv[3], (sys.argv[4] + "\n").encode()
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path in ("/", "/hello"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        return super().do_GET()
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.client_address[0], fmt % args))
        sys.stderr.flush()
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "internet.test", self.server_address[1]
h = functools.partial(H, directory=docroot)
plain, tls = S(("::", 80), h), S(("::", 443), h)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True, do_handshake_on_connect=False)
threading.Thread(target=tls.serve_forever, daemon=True).start()
print("ready", flush=True)
plain.serve_forever()
"#;

/// The internet host's server, running in the inet namespace; killed on drop.
pub struct InternetHost {
    _guard: Guard,
}

/// Starts the HTTP (:80) and HTTPS (:443) server on both address families in `net`'s inet
/// namespace, serving `docroot` (the repository) and `/hello`. Its log goes to `log`.
pub fn start_internet(
    net: &TestNet,
    docroot: &Utf8Path,
    certs: &Certs,
    work: &Utf8Path,
    log: &Utf8Path,
) -> Result<InternetHost> {
    let script = work.join("internet-host.py");
    fs::write(&script, SERVER_PY)?;
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| !p.starts_with('/') || Utf8Path::new(p).exists())
        .unwrap_or("python3");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.inet_ns, python, "-u", script.as_str()])
        .args([
            docroot.as_str(),
            certs.server_cert.as_str(),
            certs.server_key.as_str(),
        ])
        .arg(HELLO_BODY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(log)?)
        .spawn()
        .context("cannot start the internet host's server")?;
    let pid = child.id() as i32;
    let g = guard("internet host server", move || {
        kill_and_reap(pid, nix::sys::signal::Signal::SIGTERM)
    });
    let out = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("the internet host's server did not start: see {log}");
    }
    Ok(InternetHost { _guard: g })
}
