//! The end-to-end scenario: the seed's five checks against the test internet host, then the
//! whole package lifecycle (reboot, nftables restart, upgrade, remove, purge, reinstall, RPM).
//! Every check has a name; a failing check fails the run with that name.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use pipelock_containment::paths;

use super::checks::{
    check, require, table_present, AGENT, CANARY_PORT, OPERATOR, OPERATORS, PROXY,
};
use super::container::Container;
use super::net::{HELLO_BODY, INET_NAME, INET_V4, INET_V6};
use super::Lab;

const CONFIG: &str = "/etc/pipelock-containment/containment.toml";
const TINYPROXY_CONF: &str = "/etc/tinyproxy/pipelock-e2e.conf";
const COMBINED_CA: &str = "/etc/pipelock/combined-ca.pem";
const CA_KEY: &str = "/etc/pipelock/ca-key.pem";

/// One property broken at a time in the booted host: (name, how, the probes that must fail).
/// Deleting the table also frees the agent, so its probes fail with it.
const BREAKS: &[(&str, &str, &[&str])] = &[
    (
        "sudoers-mode",
        "chmod 0644 /etc/sudoers.d/pipelock-containment",
        &["sudoers"],
    ),
    (
        "wrapper-edited",
        "echo '# edited' >> /var/lib/pipelock-containment/wrappers/curl",
        &["wrappers"],
    ),
    (
        "table-deleted",
        // The watcher would put it back at once: it goes first.
        "systemctl stop pipelock-containment-watch.service && nft delete table inet pipelock_containment",
        &[
            "nft-table",
            "agent-egress-denied",
            "agent-loopback-denied",
            "dns-policy",
            "table-watcher",
        ],
    ),
    (
        "audit-stopped",
        "systemctl stop pipelock-containment-audit.socket pipelock-containment-audit.service",
        &["audit-listener"],
    ),
    (
        "proxy-stopped",
        "systemctl stop pipelock-proxy",
        &["proxy-unit", "agent-via-proxy"],
    ),
    (
        "boot-unit-disabled",
        "systemctl disable --quiet pipelock-containment.service",
        &["boot-unit"],
    ),
    (
        "ca-key-readable",
        "chmod 0644 /etc/pipelock/ca-key.pem",
        &["ca-key"],
    ),
];

fn curl_body(c: &Container, user: Option<&str>, args: &str) -> Result<()> {
    let script = match user {
        Some(u) => format!("runuser -u {u} -- curl -sS -m 10 {args}"),
        None => format!("curl -sS -m 10 {args}"),
    };
    let o = c.sh(&script)?;
    if !o.ok() || o.stdout.trim() != HELLO_BODY {
        bail!("`{script}` exited {} with {:?}", o.code, o.both().trim());
    }
    Ok(())
}

/// Must fail, and fast (the default answer to blocked traffic is a reject).
fn curl_blocked(c: &Container, user: &str, args: &str) -> Result<()> {
    // No --noproxy here: it would also cancel an explicit -x. The environment is empty anyway.
    let script = format!("runuser -u {user} -- curl -sS -m 5 {args}");
    let t = Instant::now();
    let o = c.sh(&script)?;
    let secs = t.elapsed().as_secs_f64();
    if o.ok() || o.stdout.contains(HELLO_BODY) {
        bail!(
            "CONTAINMENT BROKEN: `{script}` reached the internet host: {:?}",
            o.stdout.trim()
        );
    }
    if secs > 3.0 {
        bail!("`{script}` was blocked but took {secs:.1} s: expected a reject, not a silent drop");
    }
    Ok(())
}

fn table_absent(c: &Container) -> Result<()> {
    let o = c.sh(&format!(
        "nft list table {} {}",
        paths::NFT_TABLE_FAMILY,
        paths::NFT_TABLE
    ))?;
    if o.ok() {
        bail!(
            "table {} {} is still loaded",
            paths::NFT_TABLE_FAMILY,
            paths::NFT_TABLE
        );
    }
    Ok(())
}

/// The seed's five checks (plus verify and the loopback bypass), prefixed by the phase name.
pub fn five_checks(lab: &mut Lab, phase: &str) {
    let p = |n: &str| format!("{phase}/{n}");
    check(lab, &p("table-present"), table_present);
    // 1. An operator reaches the internet host directly.
    check(lab, &p("1-operator-direct-v4"), |c| {
        curl_body(
            c,
            Some(OPERATOR),
            &format!("--noproxy '*' http://{INET_V4}/hello"),
        )
    });
    check(lab, &p("1-operator-direct-v6"), |c| {
        curl_body(
            c,
            Some(OPERATOR),
            &format!("--noproxy '*' http://[{INET_V6}]/hello"),
        )
    });
    // 2. The proxy user reaches it.
    check(lab, &p("2-proxy-user-direct"), |c| {
        curl_body(
            c,
            Some(PROXY),
            &format!("--noproxy '*' http://{INET_V4}/hello"),
        )?;
        curl_body(
            c,
            Some(PROXY),
            &format!("--noproxy '*' --cacert /etc/pipelock/ca.pem https://{INET_NAME}/hello"),
        )
    });
    // 3. The agent cannot dial it directly, over IPv4 or IPv6, HTTP or HTTPS.
    check(lab, &p("3-agent-direct-v4-blocked"), |c| {
        curl_blocked(c, AGENT, &format!("http://{INET_V4}/hello"))
    });
    check(lab, &p("3-agent-direct-v6-blocked"), |c| {
        curl_blocked(c, AGENT, &format!("http://[{INET_V6}]/hello"))
    });
    check(lab, &p("3-agent-direct-https-blocked"), |c| {
        curl_blocked(c, AGENT, &format!("-k https://{INET_NAME}/hello"))
    });
    // Another local service that gives egress (an operator's `ssh -D`, a second proxy): the
    // agent may not use it. Root can (so the probe itself works).
    check(lab, &p("3-agent-other-loopback-port-blocked"), |c| {
        c.sh(&format!(
            "for i in $(seq 50); do ss -Hltn 'sport = :{CANARY_PORT}' | grep -q . && exit 0; sleep 0.1; done"
        ))?;
        curl_body(
            c,
            None,
            &format!("-x http://127.0.0.1:{CANARY_PORT} http://{INET_V4}/hello"),
        )
        .map_err(|e| anyhow!("the canary proxy does not work even for root: {e:#}"))?;
        curl_blocked(
            c,
            AGENT,
            &format!("-x http://127.0.0.1:{CANARY_PORT} http://{INET_V4}/hello"),
        )
    });
    // 4. The agent reaches it through the proxy (HTTP, and HTTPS trusting the combined bundle).
    check(lab, &p("4-agent-via-proxy-http"), |c| {
        curl_body(
            c,
            Some(AGENT),
            &format!("-x http://127.0.0.1:8888 http://{INET_NAME}/hello"),
        )
    });
    check(lab, &p("4-agent-via-proxy-https-combined-ca"), |c| {
        curl_body(
            c,
            Some(AGENT),
            &format!("-x http://127.0.0.1:8888 --cacert {COMBINED_CA} https://{INET_NAME}/hello"),
        )
    });
    // 5. A wrapper, end to end: the operator types the tool's name, it runs contained.
    check(lab, &p("5-wrapper-end-to-end"), |c| {
        let w = format!("{}/curl", paths::WRAPPER_DIR);
        let o = c.sh(&format!(
            "runuser -u {OPERATOR} -- {w} -sS -m 10 https://{INET_NAME}/hello"
        ))?;
        if !o.ok() || o.stdout.trim() != HELLO_BODY {
            bail!(
                "the curl wrapper as {OPERATOR} exited {}: {:?}",
                o.code,
                o.both().trim()
            );
        }
        let o = c.sh(&format!(
            "runuser -u {OPERATOR} -- {w} -sS -m 5 --noproxy '*' http://{INET_V4}/hello"
        ))?;
        if o.ok() {
            bail!(
                "CONTAINMENT BROKEN: the curl wrapper reached the internet host without the proxy"
            );
        }
        Ok(())
    });
    check(lab, &p("5-wrapper-on-operator-path"), |c| {
        let o = c.sh(&format!("runuser -l {OPERATOR} -c 'command -v curl'"))?;
        let want = format!("{}/curl", paths::WRAPPER_DIR);
        if o.stdout.trim() != want {
            bail!(
                "`curl` in {OPERATOR}'s login shell is {:?}, not {want}",
                o.both().trim()
            );
        }
        Ok(())
    });
    check(lab, &p("verify"), |c| {
        let o = c.sh(&format!(
            "pipelock-containment verify --url http://{INET_NAME}/hello"
        ))?;
        if !o.ok() {
            bail!(
                "`pipelock-containment verify` exited {}:\n{}",
                o.code,
                o.both().trim()
            );
        }
        Ok(())
    });
}

/// Runs `script` as root while an agent process outside the launcher sends datagrams in a
/// tight loop; returns the script's output and the sender's `sent=N through=M` line.
fn datagrams_during(c: &Container, script: &str) -> Result<String> {
    let ready = "/run/plc-e2e-datagrams";
    c.must(&format!(
        "rm -f {ready}.stop; nohup runuser -u {AGENT} -- python3 {attacks}/datagrams.py {INET_V4} {ready}.stop \
         > /root/datagrams.log 2>&1 < /dev/null & sleep 0.5",
        attacks = super::sessions::ATTACKS
    ))?;
    let out = c.sh(script);
    c.must(&format!(
        "touch {ready}.stop; for i in $(seq 100); do grep -q sent= /root/datagrams.log && exit 0; sleep 0.1; done; \
         cat /root/datagrams.log; exit 1"
    ))?;
    let out = out?;
    let log = c.must("cat /root/datagrams.log")?;
    Ok(format!("{}{log}", out.stdout))
}

/// The output of `datagrams_during`: the script printed `done` (it succeeded), at least
/// `min_sent` datagrams were sent during `what`, and none got through. Returns how many were sent.
fn none_through(out: &str, done: &str, min_sent: u64, what: &str) -> Result<u64> {
    let (sent, through) = parse_datagrams(out)?;
    if !out.contains(done) {
        bail!("the commands of {what} failed: {out:?}");
    }
    if through > 0 {
        bail!(
            "CONTAINMENT BROKEN: {through} of {sent} datagrams of the agent got out during {what}"
        );
    }
    if sent < min_sent {
        bail!("only {sent} datagrams were sent: the probe loop did not run");
    }
    Ok(sent)
}

fn parse_datagrams(text: &str) -> Result<(u64, u64)> {
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (field("sent="), field("through=")) {
        (Some(sent), Some(through)) => Ok((sent, through)),
        _ => bail!("the datagram sender printed no counts: {text:?}"),
    }
}

/// The probes `verify --json --url` reports as failed, and its exit code.
fn failed_probes(c: &Container) -> Result<(Vec<String>, i32)> {
    let o = c.sh(&format!(
        "pipelock-containment verify --json --url http://{INET_NAME}/hello"
    ))?;
    let report: serde_json::Value = serde_json::from_str(&o.stdout)
        .map_err(|e| anyhow!("verify --json printed no JSON ({e}): {}", o.both().trim()))?;
    let failed = report["probes"]
        .as_array()
        .ok_or_else(|| anyhow!("verify --json has no probes: {}", o.stdout.trim()))?
        .iter()
        .filter(|probe| probe["status"] == "fail")
        .filter_map(|probe| probe["name"].as_str().map(String::from))
        .collect();
    Ok((failed, o.code))
}

/// Each break fails exactly its probes (and verify exits 1); `apply` repairs it.
fn verify_breaks(lab: &mut Lab) {
    for (name, how, expected) in BREAKS {
        check(lab, &format!("verify-breaks/{name}/detected"), |c| {
            c.must(how)?;
            let (mut failed, code) = failed_probes(c)?;
            failed.sort();
            let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            want.sort();
            if failed != want || code != 1 {
                bail!("after `{how}`: verify exited {code}, failed {failed:?}; expected exit 1 and {want:?}");
            }
            Ok(())
        });
        check(
            lab,
            &format!("verify-breaks/{name}/repaired-by-apply"),
            |c| {
                c.must("pipelock-containment apply")?;
                wait_proxy(c)?;
                let (failed, code) = failed_probes(c)?;
                if !failed.is_empty() || code != 0 {
                    bail!("after apply: verify exited {code}, failed {failed:?}");
                }
                Ok(())
            },
        );
    }
}

/// Paths below `/` in the test host, for before/after comparisons. Skips what changes by
/// itself or by the test (logs, caches, package databases, homes, runtime dirs).
fn listing(c: &Container) -> Result<BTreeSet<String>> {
    let prune = [
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/tmp",
        "/var/tmp",
        "/var/log",
        "/var/cache",
        "/var/lib/apt",
        "/var/lib/dpkg",
        "/var/lib/systemd",
        "/var/lib/rpm",
        "/var/lib/ucf",
        "/var/backups",
        "/home",
        "/root",
        "/usr/share/keyrings/pipelock-containment-archive-keyring.gpg",
    ];
    let expr: Vec<String> = prune.iter().map(|p| format!("-path {p}")).collect();
    let out = c.must(&format!(
        "find / -xdev \\( {} \\) -prune -o -print",
        expr.join(" -o ")
    ))?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// New paths in `after` not in `before`, other than `allowed` (exact, or `DIR/**` for a tree).
fn leftovers(before: &BTreeSet<String>, after: &BTreeSet<String>, allowed: &[&str]) -> Vec<String> {
    after
        .difference(before)
        .filter(|p| {
            !allowed.iter().any(|a| match a.strip_suffix("/**") {
                Some(dir) => p.as_str() == dir || p.starts_with(&format!("{dir}/")),
                None => p.as_str() == *a,
            })
        })
        .cloned()
        .collect()
}

/// Files account management creates or keeps on its own (users are never deleted).
const ACCOUNT_FILES: &[&str] = &[
    "/etc/passwd-",
    "/etc/group-",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/.pwd.lock",
    "/etc/subuid",
    "/etc/subgid",
    "/etc/subuid-",
    "/etc/subgid-",
    "/var/lib/cc-agent/**",
];

/// The package's conffiles, from dpkg.
fn conffiles(c: &Container) -> Result<Vec<String>> {
    let o = c.must("dpkg-query -W -f '${Conffiles}\\n' pipelock-containment")?;
    Ok(o.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.starts_with('/'))
        .map(str::to_owned)
        .collect())
}

fn generated_files_gone(c: &Container) -> Result<()> {
    let files = [
        paths::RULE_FILE,
        paths::SUDOERS_DROPIN,
        paths::WRAPPER_DIR,
        paths::LAUNCHER,
        paths::PROXY_UNIT_DROPIN,
        COMBINED_CA,
    ];
    let mut left = Vec::new();
    for f in files {
        if c.sh(&format!("test -e {f} || test -L {f}"))?.ok() {
            left.push(f);
        }
    }
    if !left.is_empty() {
        bail!("left behind: {}", left.join(", "));
    }
    Ok(())
}

fn no_contained_processes(c: &Container) -> Result<()> {
    let o = c.sh(&format!("pgrep -a -u {AGENT}; pgrep -a -u {PROXY}"))?;
    if !o.stdout.trim().is_empty() {
        bail!("processes left running: {}", o.stdout.trim());
    }
    Ok(())
}

/// Operator setup before the package: the repository and its key, the proxy's CA (what
/// pipelock would have generated), a tinyproxy config for the stand-in proxy, and a second local
/// proxy (the "canary") that the agent must not be able to use.
pub fn prepare_host(lab: &mut Lab) -> Result<()> {
    let rootfs = lab.rootfs.clone();
    super::sessions::install_attacks(&rootfs)?;
    std::fs::create_dir_all(rootfs.join("etc/pipelock"))?;
    std::fs::copy(&lab.certs.ca, rootfs.join("etc/pipelock/ca.pem"))?;
    // The proxy's CA key, world-readable as a careless setup leaves it: apply must lock it down.
    let key = rootfs.join(CA_KEY.trim_start_matches('/'));
    std::fs::copy(lab.certs.ca.with_file_name("ca-key.pem"), &key)?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::fs::write(
        rootfs.join(TINYPROXY_CONF.trim_start_matches('/')),
        "# Stand-in for pipelock in the end-to-end test.\nPort 8888\nListen 127.0.0.1\n\
         Timeout 60\nMaxClients 50\nAllow 127.0.0.1\nLogLevel Notice\n",
    )?;
    std::fs::write(
        rootfs.join("etc/tinyproxy/e2e-canary.conf"),
        format!(
            "Port {CANARY_PORT}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogLevel Notice\n"
        ),
    )?;
    require(lab, "setup/hostname-resolves", |c| {
        c.must(
            "grep -qw \"$(hostname)\" /etc/hosts || echo \"127.0.1.1 $(hostname)\" >> /etc/hosts",
        )?;
        c.must("getent hosts \"$(hostname)\" >/dev/null")?;
        Ok(())
    })?;
    std::fs::write(
        rootfs.join("etc/systemd/system/e2e-canary-proxy.service"),
        "[Unit]\nDescription=A second local proxy the agent must not be able to use\n\
         [Service]\nUser=nobody\nGroup=nogroup\n\
         ExecStart=/usr/bin/tinyproxy -d -c /etc/tinyproxy/e2e-canary.conf\n\
         [Install]\nWantedBy=multi-user.target\n",
    )?;
    require(lab, "setup/canary-proxy", |c| {
        c.must(&format!(
            "systemctl daemon-reload && systemctl enable --now e2e-canary-proxy.service && \
             for i in $(seq 50); do ss -Hltn 'sport = :{CANARY_PORT}' | grep -q . && exit 0; sleep 0.1; done; exit 1"
        ))
        .map(|_| ())
    })?;
    require(lab, "setup/apt-source-with-key", |c| {
        c.must(&format!(
            "curl -fsS -o /usr/share/keyrings/pipelock-containment-archive-keyring.gpg \
               http://{INET_V4}/{key} && \
             printf 'Types: deb\\nURIs: http://{INET_V4}/apt\\nSuites: {suite}\\nComponents: {comp}\\n\
Signed-By: /usr/share/keyrings/pipelock-containment-archive-keyring.gpg\\n' \
               > /etc/apt/sources.list.d/pipelock-containment.sources && \
             apt-get update",
            key = super::repo::KEYRING,
            suite = super::repo::SUITE,
            comp = super::repo::COMPONENT,
        ))
        .map(|_| ())
    })?;
    Ok(())
}

/// The operator's configuration: the proxy command (tinyproxy as the proxy user, edited in the
/// config file), a wrapper for curl (`tools add`), an operator account; then `apply`.
fn configure(lab: &mut Lab, phase: &str) -> Result<()> {
    require(lab, &format!("{phase}/configure-and-apply"), |c| {
        c.must(&format!(
            "sed -i 's|^command = .*|command = [\"/usr/bin/tinyproxy\", \"-d\", \"-c\", \"{TINYPROXY_CONF}\"]|' {CONFIG} && \
             grep -q '^command = \\[\"/usr/bin/tinyproxy\"' {CONFIG}"
        ))?;
        c.must(&format!(
            "id {OPERATOR} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {OPERATOR}; \
             usermod -a -G {OPERATORS} {OPERATOR}"
        ))?;
        c.must("pipelock-containment tools add curl")?;
        c.must("pipelock-containment apply")?;
        Ok(())
    })?;
    check(lab, &format!("{phase}/proxy-listening"), wait_proxy);
    Ok(())
}

fn wait_proxy(c: &Container) -> Result<()> {
    let o = c.sh(
        "for i in $(seq 100); do ss -Hltn 'sport = :8888' | grep -q 127.0.0.1 && exit 0; sleep 0.1; done; \
         systemctl status --no-pager pipelock-proxy; exit 1",
    )?;
    if !o.ok() {
        bail!(
            "nothing listens on 127.0.0.1:8888 after apply:\n{}",
            o.both().trim()
        );
    }
    let o = c.sh("ps -o user= -C tinyproxy")?;
    if !o.stdout.lines().any(|l| l.trim() == PROXY) {
        bail!("tinyproxy does not run as {PROXY}: {:?}", o.stdout.trim());
    }
    Ok(())
}

fn apt_install(c: &Container, what: &str) -> Result<()> {
    c.must(&format!(
        "apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {what}"
    ))
    .map(|_| ())
}

fn installed_version(c: &Container) -> Result<String> {
    Ok(
        c.must("dpkg-query -W -f '${Status} ${Version}' pipelock-containment")?
            .trim()
            .to_owned(),
    )
}

/// Prepare, install from the repository, configure (the start of every scenario).
pub fn run_install_only(lab: &mut Lab) -> Result<()> {
    lab.step(
        "scenario: prepare the test host (repo, key, CA, proxy config)",
        prepare_host,
    )?;
    lab.step("scenario: apt-get install from the signed repo", |lab| {
        require(lab, "install/apt-get-install", |c| {
            apt_install(c, "pipelock-containment")
        })?;
        configure(lab, "install")
    })
}

/// `cargo xtask e2e --sessions-only`: install, configure, then only the session checks.
pub fn run_sessions_only(lab: &mut Lab) -> Result<()> {
    run_install_only(lab)?;
    lab.step(
        "scenario: contained sessions (each attack with its control)",
        super::sessions::phase,
    )?;
    lab.step(
        "scenario: the audit trail (attempts per session, bursts, restarts)",
        super::audit::phase,
    )
}

pub fn run(lab: &mut Lab) -> Result<()> {
    lab.step(
        "scenario: prepare the test host (repo, key, CA, proxy config)",
        prepare_host,
    )?;
    let before_install = lab.step("scenario: apt-get install from the signed repo", |lab| {
        let before = listing(lab.c())?;
        require(lab, "install/apt-get-install", |c| {
            apt_install(c, "pipelock-containment")
        })?;
        check(lab, "install/table-present", table_present);
        check(lab, "install/dpkg-verify-clean", |c| {
            let o = c.sh("dpkg --verify pipelock-containment")?;
            let md5 = c.sh("test -s /var/lib/dpkg/info/pipelock-containment.md5sums")?;
            if !o.ok() || !o.stdout.trim().is_empty() || !md5.ok() {
                bail!(
                    "dpkg --verify: {:?} (md5sums recorded: {})",
                    o.both(),
                    md5.ok()
                );
            }
            Ok(())
        });
        check(lab, "install/users-exist", |c| {
            c.must(&format!(
                "getent passwd {AGENT} {PROXY} && getent group {OPERATORS}"
            ))
            .map(|_| ())
        });
        configure(lab, "install")?;
        Ok(before)
    })?;
    lab.step("scenario: the seed's five checks", |lab| {
        five_checks(lab, "installed");
        Ok(())
    })?;
    lab.step(
        "scenario: contained sessions (each attack with its control)",
        super::sessions::phase,
    )?;
    lab.step(
        "scenario: the audit trail (attempts per session, bursts, restarts)",
        super::audit::phase,
    )?;
    lab.step(
        "scenario: the agent account outside the launcher (ssh, cron, D-Bus)",
        super::account::phase,
    )?;
    lab.step(
        "scenario: verify catches each break, apply repairs it",
        |lab| {
            verify_breaks(lab);
            Ok(())
        },
    )?;
    lab.step("scenario: reboot", |lab| {
        lab.reboot()?;
        check(lab, "reboot/table-loaded-before-network-pre", |c| {
            let o = c.must(
                "systemctl show -p ActiveState -p ActiveEnterTimestampMonotonic pipelock-containment.service; \
                 systemctl show -p ActiveEnterTimestampMonotonic --value network-pre.target",
            )?;
            let unit_ts = o.lines().find_map(|l| l.strip_prefix("ActiveEnterTimestampMonotonic="))
                .and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let active = o.lines().any(|l| l == "ActiveState=active");
            let pre_ts = o.lines().last().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
            if !active || unit_ts == 0 {
                bail!("pipelock-containment.service is not active after boot: {o}");
            }
            if pre_ts == 0 || unit_ts > pre_ts {
                bail!("the table was loaded at {unit_ts} µs, network-pre.target reached at {pre_ts} µs");
            }
            Ok(())
        });
        check(lab, "reboot/proxy-back", wait_proxy);
        five_checks(lab, "after-reboot");
        Ok(())
    })?;
    lab.step("scenario: systemctl restart nftables", |lab| {
        check(lab, "nftables-restart/table-back", |c| {
            c.must("systemctl restart nftables.service")?;
            c.must(&format!(
                "for i in $(seq 50); do nft list table {} {} >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1",
                paths::NFT_TABLE_FAMILY, paths::NFT_TABLE
            ))
            .map(|_| ())
            .map_err(|e| anyhow!("table not back 5 s after the restart: {e:#}"))
        });
        check(lab, "nftables-restart/agent-direct-blocked", |c| {
            curl_blocked(c, AGENT, &format!("http://{INET_V4}/hello"))
        });
        check(lab, "nftables-reload/table-back", |c| {
            c.must("systemctl reload-or-restart nftables.service")?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            table_present(c)
        });
        check(lab, "nftables-restarts-and-reloads/no-window", |c| {
            let out = datagrams_during(
                c,
                // reset-failed clears the start rate limit, so every restart really happens.
                "set -e; for i in $(seq 20); do systemctl restart nftables.service; \
                 systemctl reload nftables.service; systemctl reset-failed nftables.service; done; echo cycles=20",
            )?;
            let sent = none_through(&out, "cycles=20", 20_000, "20 restarts and 20 reloads")?;
            println!("          {sent} datagrams during 20 restarts and 20 reloads of nftables, 0 through");
            Ok(())
        });
        check(lab, "nftables-stop/table-stays", |c| {
            c.must("systemctl reset-failed nftables.service; systemctl stop nftables.service")?;
            let r = table_present(c);
            c.must("systemctl start nftables.service")?;
            r
        });
        check(lab, "manual-flush/watcher-restores", |c| {
            // Control: with the watcher stopped, the flush really takes the table away.
            c.must("systemctl stop pipelock-containment-watch.service && nft -f /etc/nftables.conf")?;
            if table_present(c).is_ok() {
                bail!("control failed: `nft -f /etc/nftables.conf` left the table in place");
            }
            c.must("pipelock-containment apply >/dev/null")?;
            table_present(c)?;
            let out = datagrams_during(
                c,
                "sleep 0.5; start=$(date +%s%N); nft -f /etc/nftables.conf; \
                 while ! nft list table inet pipelock_containment >/dev/null 2>&1; do :; done; \
                 echo back_ms=$(( ($(date +%s%N) - start) / 1000000 ))",
            )?;
            let back: u64 = out
                .split_whitespace()
                .find_map(|w| w.strip_prefix("back_ms="))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("no timing in {out:?}"))?;
            let (sent, through) = parse_datagrams(&out)?;
            let state = c.must("cat /run/pipelock-containment/watch.json")?;
            println!(
                "          after `nft -f /etc/nftables.conf` the table was back in {back} ms; {through} of {sent} datagrams got through meanwhile; watcher: {}",
                state.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            if back > 100 {
                bail!("the table came back after {back} ms (target: 100 ms)");
            }
            Ok(())
        });
        Ok(())
    })?;
    lab.step("scenario: firewalld and ufw leave the table alone", |lab| {
        for (name, script) in [
            (
                "firewall/firewalld-start-reload-restart",
                "set -e; systemctl unmask firewalld.service; systemctl start firewalld.service; \
                 firewall-cmd --reload; firewall-cmd --complete-reload; systemctl restart firewalld.service; \
                 firewall-cmd --state; systemctl stop firewalld.service; systemctl mask firewalld.service; echo done=1",
            ),
            (
                "firewall/ufw-enable-reload-disable",
                "set -e; ufw --force enable; ufw reload; ufw disable; echo done=1",
            ),
        ] {
            check(lab, name, |c| {
                let out = datagrams_during(c, script)?;
                let sent = none_through(&out, "done=1", 1000, name)?;
                table_present(c)?;
                println!("          {sent} datagrams of the agent meanwhile, 0 through");
                Ok(())
            });
        }
        Ok(())
    })?;
    lab.step("scenario: upgrade to a higher version under egress attempts", |lab| {
        let v2 = lab.publish_upgrade()?;
        lab.c().must(
            "rm -f /run/e2e-stop; \
             nohup sh -c 'while [ ! -e /run/e2e-stop ]; do \
               runuser -u cc-agent -- curl -s -m 2 --noproxy \"*\" -o /dev/null http://192.0.2.1/hello; echo \"v4 rc=$?\"; \
               runuser -u cc-agent -- curl -s -m 2 --noproxy \"*\" -o /dev/null \"http://[2001:db8::1]/hello\"; echo \"v6 rc=$?\"; \
             done' > /root/egress-loop.log 2>&1 < /dev/null &",
        )?;
        std::thread::sleep(std::time::Duration::from_secs(1));
        require(lab, "upgrade/apt-get-install-new-version", |c| {
            c.must("apt-get update")?;
            // The proxy restarts in the upgrade; a session started the moment apt-get returns
            // must find it listening (its unit's start waits for the port).
            let o = c.sh(&format!(
                "apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                 pipelock-containment >/root/upgrade.log 2>&1 || exit 100; \
                 cd /home/{OPERATOR}/proj && runuser -u {OPERATOR} -- cc-launch curl -sS -m 10 http://{INET_NAME}/hello"
            ))?;
            if o.code == 100 {
                bail!("apt-get install failed: {}", c.must("cat /root/upgrade.log")?);
            }
            if !o.ok() || o.stdout.trim() != HELLO_BODY {
                bail!("a session right after the upgrade failed: {:?}", o.both());
            }
            let v = installed_version(c)?;
            if !v.ends_with(&format!(" {v2}")) {
                bail!("installed after the upgrade: {v:?}, expected {v2}");
            }
            Ok(())
        })?;
        std::thread::sleep(std::time::Duration::from_secs(1));
        check(lab, "upgrade/no-egress-window", |c| {
            c.must("touch /run/e2e-stop; sleep 2")?;
            let log = c.must("cat /root/egress-loop.log")?;
            let tries = log.lines().filter(|l| l.contains("rc=")).count();
            let leaks: Vec<_> = log.lines().filter(|l| l.ends_with("rc=0")).collect();
            if !leaks.is_empty() {
                bail!("CONTAINMENT BROKEN during the upgrade: {} direct attempts as {AGENT} succeeded", leaks.len());
            }
            if tries < 10 {
                bail!("only {tries} attempts during the upgrade: the probe loop did not run");
            }
            println!("          {tries} direct attempts during the upgrade, all blocked");
            Ok(())
        });
        check(lab, "upgrade/config-edits-kept", |c| {
            c.must(&format!("grep -q '^command = \\[\"/usr/bin/tinyproxy\"' {CONFIG} && grep -q '\"curl\"' {CONFIG}"))
                .map(|_| ())
        });
        check(lab, "upgrade/proxy-back", wait_proxy);
        five_checks(lab, "after-upgrade");
        Ok(())
    })?;
    lab.step("scenario: the admin's choices survive an upgrade", |lab| {
        let reinstall = "apt-get install --reinstall -y pipelock-containment 2>&1";
        let state = |c: &Container| -> Result<String> {
            Ok(c.sh("systemctl is-enabled pipelock-proxy.service; systemctl is-active pipelock-proxy.service")?
                .stdout
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "))
        };
        check(lab, "admin/disabled-proxy-stays-disabled", |c| {
            c.must(&format!("systemctl disable --now pipelock-proxy.service && {reinstall}"))?;
            let s = state(c)?;
            if s != "disabled inactive" {
                bail!("after the upgrade the disabled proxy is {s:?}");
            }
            table_present(c)
        });
        check(lab, "admin/masked-proxy-upgrade-succeeds-and-says-so", |c| {
            let out = c.must(&format!("systemctl mask pipelock-proxy.service && {reinstall}"))?;
            if !out.contains("pipelock-proxy.service is masked") {
                bail!("the upgrade did not report the masked unit:\n{out}");
            }
            let s = state(c)?;
            if !s.starts_with("masked") {
                bail!("after the upgrade the masked proxy is {s:?}");
            }
            table_present(c)
        });
        check(lab, "admin/policy-rc-d-101-starts-nothing", |c| {
            c.must(&format!(
                "systemctl unmask pipelock-proxy.service && systemctl enable pipelock-proxy.service && \
                 printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && \
                 {reinstall}; rc=$?; rm -f /usr/sbin/policy-rc.d; exit $rc"
            ))?;
            let s = state(c)?;
            if s != "enabled inactive" {
                bail!("with policy-rc.d exit 101 the upgrade left the proxy {s:?}");
            }
            c.must("systemctl start pipelock-proxy.service")?;
            wait_proxy(c)
        });
        Ok(())
    })?;
    lab.step("scenario: apt-get remove", |lab| {
        // An agent still running when the package goes must not survive it: one outside the
        // launcher, and a session running a fork-and-exit loop.
        lab.c().must(&format!(
            "nohup runuser -u {AGENT} -- sleep 1000 >/dev/null 2>&1 < /dev/null & sleep 0.5; pgrep -u {AGENT} sleep"
        ))?;
        super::sessions::launch_background(
            lab.c(),
            "sh -c \"while :; do sh -c \\\"sleep 300 &\\\"; done\"",
            "/home/alice/remove-loop.log",
        )?;
        // A job the agent left with cron must not run once the table is gone.
        super::account::plant_agent_job(lab.c(), "after-remove")?;
        let conffiles = conffiles(lab.c())?;
        require(lab, "remove/apt-get-remove", |c| {
            c.must("apt-get remove -y pipelock-containment").map(|_| ())
        })?;
        let internet_log = lab.internet_log();
        check(lab, "remove/agent-cron-job-gone-and-not-run", |c| {
            super::account::cron_jobs_run(c, &internet_log, "after-remove", false)
        });
        check(lab, "remove/table-gone", table_absent);
        check(lab, "remove/generated-files-gone", generated_files_gone);
        check(lab, "remove/no-agent-or-proxy-process", no_contained_processes);
        check(lab, "remove/agent-sudo-grant-gone", |c| {
            let o = c.sh(&format!("sudo -l -U {OPERATOR} | grep -i {AGENT}"))?;
            if o.ok() {
                bail!("{OPERATOR} may still run commands as {AGENT}: {}", o.stdout.trim());
            }
            Ok(())
        });
        let before = before_install.clone();
        check(lab, "remove/file-system-listing", |c| {
            let after = listing(c)?;
            let mut allowed: Vec<&str> = ACCOUNT_FILES.to_vec();
            // Conffiles (and their directories) stay until purge (Debian policy), and so do the
            // state directories and the units' enablement links. Their contents do not.
            allowed.extend(conffiles.iter().map(String::as_str));
            let state = format!("{}/**", paths::STATE_DIR);
            allowed.extend(["/etc/pipelock-containment", &state, "/var/lib/pipelock"]);
            // deb-systemd-helper masks a removed package's enabled units until purge
            // (dh_installsystemd): every file of the table's enabled units.
            let root = crate::cmd::project_root();
            let mut masks = Vec::new();
            for unit in pipelock_contents::load(&root)?.unit.iter().filter(|u| u.enable) {
                masks.extend(
                    unit.files(&root)?
                        .into_iter()
                        .map(|file| format!("/etc/systemd/system/{file}")),
                );
            }
            allowed.extend(masks.iter().map(String::as_str));
            // The enablement links, and the .wants directories that hold them, stay too.
            let left: Vec<_> = leftovers(&before, &after, &allowed)
                .into_iter()
                .filter(|p| !(p.starts_with("/etc/systemd/system/") && p.contains(".wants")))
                .collect();
            if !left.is_empty() {
                bail!("left after remove: {}", left.join(", "));
            }
            Ok(())
        });
        Ok(())
    })?;
    lab.step("scenario: apt-get purge, then reinstall", |lab| {
        require(lab, "purge/apt-get-purge", |c| {
            c.must("apt-get purge -y pipelock-containment").map(|_| ())
        })?;
        check(lab, "purge/config-and-state-gone", |c| {
            let mut left = Vec::new();
            for d in ["/etc/pipelock-containment", paths::STATE_DIR] {
                if c.sh(&format!("test -e {d}"))?.ok() {
                    left.push(d);
                }
            }
            if !left.is_empty() {
                bail!("left after purge: {}", left.join(", "));
            }
            Ok(())
        });
        check(lab, "purge/file-system-listing", |c| {
            let after = listing(c)?;
            let left = leftovers(&before_install, &after, ACCOUNT_FILES);
            if !left.is_empty() {
                bail!("left after purge: {}", left.join(", "));
            }
            Ok(())
        });
        check(lab, "purge/users-kept", |c| {
            c.must(&format!("getent passwd {AGENT} {PROXY}"))
                .map(|_| ())
        });
        require(lab, "reinstall/apt-get-install", |c| {
            apt_install(c, "pipelock-containment")
        })?;
        check(lab, "reinstall/table-present", table_present);
        check(lab, "reinstall/agent-direct-blocked", |c| {
            curl_blocked(c, AGENT, &format!("http://{INET_V4}/hello"))
        });
        require(lab, "reinstall/purge-again", |c| {
            c.must("apt-get purge -y pipelock-containment")?;
            table_absent(c)
        })?;
        Ok(())
    })?;
    lab.step(
        "scenario: RPM scriptlets (rpm -i --nodeps, rpm -e) in the same host",
        |lab| {
            let Some(rpm) = lab.rpm_name.clone() else {
                lab.checks.record(
                    "rpm/package-built",
                    Err(anyhow!("no .rpm among the artefacts")),
                    0.0,
                );
                return Ok(());
            };
            require(lab, "rpm/fetch-and-signature", |c| {
                c.must(&format!(
                    "curl -fsS -o /root/{rpm} http://{INET_V4}/rpm/{rpm} && \
                 curl -fsS -o /root/repo-key.asc http://{INET_V4}/{asc} && \
                 rpm --import /root/repo-key.asc && rpm -K /root/{rpm}",
                    asc = super::repo::KEY_ASC
                ))
                .map(|_| ())
            })?;
            let before = listing(lab.c())?;
            require(lab, "rpm/install", |c| {
                c.must(&format!("rpm -i --nodeps --force-debian /root/{rpm}"))
                    .map(|_| ())
            })?;
            check(lab, "rpm/table-present", table_present);
            check(lab, "rpm/agent-direct-blocked", |c| {
                curl_blocked(c, AGENT, &format!("http://{INET_V4}/hello"))
            });
            configure(lab, "rpm")?;
            five_checks(lab, "rpm-contained");
            if let Some(rpm2) = lab.rpm2_name.clone() {
                check(lab, "rpm/upgrade-keeps-containment", |c| {
                    c.must(&format!(
                        "curl -fsS -o /root/{rpm2} http://{INET_V4}/rpm/{rpm2} && \
                     rpm -U --nodeps --force-debian /root/{rpm2}"
                    ))?;
                    table_present(c)?;
                    curl_blocked(c, AGENT, &format!("http://{INET_V4}/hello"))
                });
            }
            require(lab, "rpm/erase", |c| {
                c.must("rpm -e --nodeps pipelock-containment").map(|_| ())
            })?;
            check(lab, "rpm/erase-table-gone", table_absent);
            check(lab, "rpm/erase-generated-files-gone", generated_files_gone);
            check(
                lab,
                "rpm/erase-no-agent-or-proxy-process",
                no_contained_processes,
            );
            check(lab, "rpm/erase-file-system-listing", |c| {
                let after = listing(c)?;
                let mut allowed: Vec<&str> = ACCOUNT_FILES.to_vec();
                // rpm keeps an edited config file as .rpmsave.
                allowed.extend([
                    "/etc/pipelock-containment",
                    "/etc/pipelock-containment/containment.toml.rpmsave",
                    "/var/lib/pipelock/**",
                    // Shell completion directories a Fedora host already has (filesystem, zsh,
                    // fish own them); on this Debian host rpm creates them and leaves them.
                    "/usr/share/fish",
                    "/usr/share/fish/vendor_completions.d",
                    "/usr/share/zsh/site-functions",
                    "/usr/share/licenses",
                ]);
                let left = leftovers(&before, &after, &allowed);
                if !left.is_empty() {
                    bail!("left after rpm -e: {}", left.join(", "));
                }
                Ok(())
            });
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn leftovers_names_new_paths_only() {
        let before = set(&["/etc", "/etc/sudoers.d"]);
        let after = set(&[
            "/etc",
            "/etc/sudoers.d",
            "/etc/sudoers.d/pipelock-containment",
        ]);
        assert_eq!(
            leftovers(&before, &after, &[]),
            vec!["/etc/sudoers.d/pipelock-containment"]
        );
    }

    #[test]
    fn leftovers_allowed_exact_is_not_a_prefix() {
        let before = set(&[]);
        let after = set(&[
            "/var/lib/pipelock",
            "/var/lib/pipelock/x",
            "/var/lib/pipelock-containment",
        ]);
        assert_eq!(
            leftovers(&before, &after, &["/var/lib/pipelock"]),
            vec!["/var/lib/pipelock-containment", "/var/lib/pipelock/x"]
        );
        assert_eq!(
            leftovers(&before, &after, &["/var/lib/pipelock/**"]),
            vec!["/var/lib/pipelock-containment"]
        );
    }
}
