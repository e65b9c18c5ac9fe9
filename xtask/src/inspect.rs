//! Checks on the built packages, read back with the distros' own tools (dpkg-deb, rpm): the file
//! list, modes, owners, conffiles, metadata, dependencies and maintainer scripts.
//!
//! Every problem is collected and reported together, each naming the package and what differs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use pipelock_containment::{account, paths, render, sysusers};

use crate::cmd;
use crate::contents::{self, Kind, Packager, Shipped};
use crate::dist::{Packages, RELEASE};
use crate::generate::{self, BIN};

/// The config file the packages ship: a conffile (`noreplace` on RPM).
const CONFIG_FILE: &str = "/etc/pipelock-containment/containment.toml";
/// The boot unit: never restarted or stopped by a package upgrade.
const BOOT_UNIT: &str = pipelock_containment::plan::CONTAINMENT_UNIT;
/// What the .deb depends on (besides the shared libraries cargo-deb finds).
const DEB_DEPENDS: [&str; 5] = ["nftables", "sudo", "ca-certificates", "systemd", "adduser"];
const RPM_REQUIRES: [&str; 4] = ["nftables", "sudo", "ca-certificates", "systemd"];

/// One packaged file: its mode bits, owner and group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    owner: String,
    group: String,
}

/// Collected problems.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }
}

/// Check both packages; the error lists every problem found.
pub fn check(packages: &Packages) -> Result<()> {
    let mut problems = Problems::default();
    check_deb(packages, &mut problems).context("cannot inspect the .deb")?;
    check_rpm(packages, &mut problems).context("cannot inspect the .rpm")?;
    if !problems.0.is_empty() {
        bail!(
            "{} problem(s) in the built packages:\n  - {}",
            problems.0.len(),
            problems.0.join("\n  - ")
        );
    }
    eprintln!(
        "package checks passed: {} and {}",
        packages.deb.file_name().unwrap_or_default(),
        packages.rpm.file_name().unwrap_or_default()
    );
    Ok(())
}

/// The regular files a package must hold, with their modes: nothing more, nothing less. They are
/// the contents table's, and for the .deb what cargo-deb adds (the copyright and changelog).
fn expected_files(shipped: &[Shipped], packager: Packager) -> BTreeMap<String, u32> {
    let mut files: BTreeMap<String, u32> =
        shipped.iter().map(|f| (f.dest.clone(), f.mode)).collect();
    if packager == Packager::Deb {
        for doc in ["copyright", "changelog.Debian.gz"] {
            files.insert(format!("/usr/share/doc/{BIN}/{doc}"), 0o644);
        }
    }
    files
}

/// What the contents table says `packager` ships (the generated files exist after a build).
fn shipped(packager: Packager) -> Result<Vec<Shipped>> {
    let root = cmd::project_root();
    contents::load(&root)?.shipped(&root, packager)
}

/// Paths a package of ours must never ship (policy, merged /usr, and files the helper generates).
fn forbidden(path: &str) -> Option<&'static str> {
    let rules: [(&str, &str); 8] = [
        ("/usr/local/", "nothing goes under /usr/local"),
        ("/bin/", "merged /usr: use /usr/bin"),
        ("/sbin/", "merged /usr: use /usr/sbin"),
        ("/lib/", "merged /usr: use /usr/lib"),
        ("/lib64/", "merged /usr: use /usr/lib"),
        (
            "/etc/sudoers.d/",
            "the helper generates the sudoers drop-in",
        ),
        ("/etc/nftables.d/", "the helper generates the rule file"),
        ("/var/", "state is created at run time"),
    ];
    rules
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, why)| *why)
        .or_else(|| {
            path.contains("sudoers")
                .then_some("no sudoers file is shipped")
        })
}

/// Mode bits from `ls -l` style permissions, e.g. "-rwsr-xr-x" -> ('-', 0o4755).
fn parse_perms(perms: &str) -> Option<(char, u32)> {
    let chars: Vec<char> = perms.chars().collect();
    if chars.len() != 10 {
        return None;
    }
    let mut mode = 0;
    for (i, &c) in chars[1..].iter().enumerate() {
        let bit = 1 << (8 - i);
        let special = match i {
            2 => 0o4000,
            5 => 0o2000,
            8 => 0o1000,
            _ => 0,
        };
        match c {
            '-' => {}
            'r' | 'w' | 'x' => mode |= bit,
            's' | 't' => mode |= bit | special,
            'S' | 'T' => mode |= special,
            _ => return None,
        }
    }
    Some((chars[0], mode))
}

/// Problems with the file list and modes, common to both formats.
fn check_entries(
    label: &str,
    expected: &BTreeMap<String, u32>,
    entries: &BTreeMap<String, Entry>,
    problems: &mut Problems,
) {
    for (path, entry) in entries {
        if let Some(why) = forbidden(path) {
            problems.0.push(format!("{label}: ships {path}: {why}"));
        }
        let root = |name: &str| name == "root" || name == "0";
        problems.check(root(&entry.owner) && root(&entry.group), || {
            format!(
                "{label}: {path} is owned by {}:{}, not root:root",
                entry.owner, entry.group
            )
        });
        problems.check(entry.mode & 0o7000 == 0, || {
            format!(
                "{label}: {path} has mode {:04o}: no setuid/setgid/sticky bit",
                entry.mode
            )
        });
        problems.check(entry.mode & 0o002 == 0, || {
            format!("{label}: {path} is world-writable ({:04o})", entry.mode)
        });
        match entry.kind {
            '-' => match expected.get(path) {
                Some(&mode) => problems.check(entry.mode == mode, || {
                    format!(
                        "{label}: {path} has mode {:04o}, expected {mode:04o}",
                        entry.mode
                    )
                }),
                None => problems.0.push(format!("{label}: unexpected file {path}")),
            },
            'd' => problems.check(entry.mode == 0o755, || {
                format!(
                    "{label}: directory {path} has mode {:04o}, expected 0755",
                    entry.mode
                )
            }),
            other => problems.0.push(format!(
                "{label}: {path} is of type {other:?}; only files and directories are expected"
            )),
        }
    }
    for path in expected.keys() {
        problems.check(entries.get(path).is_some_and(|e| e.kind == '-'), || {
            format!("{label}: missing {path}")
        });
    }
}

/// Problems with the files' contents, read from the unpacked tree.
fn check_contents(
    label: &str,
    packages: &Packages,
    shipped: &[Shipped],
    tree: &Utf8Path,
    problems: &mut Problems,
) {
    let root = cmd::project_root();
    let read = |path: &str| std::fs::read_to_string(tree.join(path.trim_start_matches('/')));

    match read(CONFIG_FILE) {
        Ok(text) => problems.check(text == packages.config_text, || {
            format!("{label}: {CONFIG_FILE} is not the config the build was given")
        }),
        Err(err) => problems
            .0
            .push(format!("{label}: cannot read {CONFIG_FILE}: {err}")),
    }
    let users = &packages.config.users;
    match read(sysusers::SYSUSERS_FILE) {
        Ok(text) => {
            problems.check(text == sysusers::render(&packages.config), || {
                format!(
                    "{label}: {} does not match the packaged config",
                    sysusers::SYSUSERS_FILE
                )
            });
            for (kind, name) in [
                ("u", &users.agent),
                ("u", &users.proxy),
                ("g", &users.operators_group),
            ] {
                problems.check(text.contains(&format!("\n{kind} {name} ")), || {
                    format!(
                        "{label}: {} does not declare `{kind} {name}`",
                        sysusers::SYSUSERS_FILE
                    )
                });
            }
        }
        Err(err) => problems.0.push(format!(
            "{label}: cannot read {}: {err}",
            sysusers::SYSUSERS_FILE
        )),
    }
    let policy = render::render_dbus_policy(&packages.config).ok();
    problems.check(
        policy.is_some() && read(account::DBUS_POLICY).ok() == policy,
        || {
            format!(
                "{label}: {} is missing or does not name the packaged agent",
                account::DBUS_POLICY
            )
        },
    );
    // Every file that comes from the repository as it is (units, drop-ins, hooks): the same bytes.
    for file in shipped.iter().filter(|f| !f.source.starts_with("target")) {
        let packaged = std::fs::read(tree.join(file.dest.trim_start_matches('/'))).ok();
        let source = std::fs::read(root.join(&file.source)).ok();
        problems.check(packaged.is_some() && packaged == source, || {
            format!("{label}: {} differs from {}", file.dest, file.source)
        });
    }
    for page in generate::man_page_files() {
        let path = tree.join("usr/share/man/man1").join(&page);
        let mut text = String::new();
        let ok = std::fs::File::open(&path)
            .map(flate2::read::GzDecoder::new)
            .and_then(|mut gz| gz.read_to_string(&mut text))
            .is_ok();
        problems.check(ok && text.contains(".TH "), || {
            format!("{label}: man page {page} is not a gzipped roff page")
        });
    }
    let binary = tree.join("usr/bin").join(BIN);
    match cmd::output(Command::new(&binary).arg("--version")) {
        Ok(out) => problems.check(out.trim().starts_with(&format!("{BIN} ")), || {
            format!("{label}: `{BIN} --version` printed {out:?}")
        }),
        Err(err) => problems.0.push(format!(
            "{label}: the packaged binary does not run: {err:#}"
        )),
    }
}

/// A shell script that `sh -n` and `shellcheck -s sh` accept.
fn check_shell_syntax(label: &str, name: &str, text: &str, problems: &mut Problems) {
    for checker in [
        &["sh", "-n", "-s"][..],
        &["shellcheck", "-s", "sh", "-"][..],
    ] {
        match run_with_stdin(checker, text) {
            Ok(out) => problems.check(out.status.success(), || {
                format!(
                    "{label}: `{}` rejects {name}: {}{}",
                    checker.join(" "),
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            }),
            Err(err) => problems.0.push(format!(
                "{label}: cannot run `{}` on {name}: {err}",
                checker.join(" ")
            )),
        }
    }
}

fn run_with_stdin(argv: &[&str], text: &str) -> Result<std::process::Output> {
    use std::io::Write;
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(text.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// An empty directory next to the packages, for unpacking `what`.
fn scratch_dir(packages: &Packages, what: &str) -> Result<Utf8PathBuf> {
    let dir = packages
        .deb
        .parent()
        .unwrap_or(Utf8Path::new("."))
        .join(format!("inspect-{what}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {dir}"))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
    Ok(dir)
}

fn check_deb(packages: &Packages, problems: &mut Problems) -> Result<()> {
    let deb = packages.deb.as_str();
    let label = packages.deb.file_name().unwrap_or(deb).to_owned();
    let label = label.as_str();

    // dpkg-deb -c: "-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/bin/x"
    let listing = cmd::output(Command::new("dpkg-deb").args(["-c", deb]))?;
    eprintln!("$ dpkg-deb -c {deb}\n{listing}");
    let mut entries = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(perms), Some(owner), Some(path)) = (fields.first(), fields.get(1), fields.get(5))
        else {
            problems
                .0
                .push(format!("{label}: cannot read listing line {line:?}"));
            continue;
        };
        let Some((kind, mode)) = parse_perms(perms) else {
            problems
                .0
                .push(format!("{label}: cannot read the mode in {line:?}"));
            continue;
        };
        let path = path.trim_start_matches('.').trim_end_matches('/');
        if path.is_empty() {
            continue;
        }
        let (owner, group) = owner.split_once('/').unwrap_or((owner, ""));
        entries.insert(
            path.to_owned(),
            Entry {
                kind,
                mode,
                owner: owner.into(),
                group: group.into(),
            },
        );
    }
    let shipped = shipped(Packager::Deb)?;
    check_entries(
        label,
        &expected_files(&shipped, Packager::Deb),
        &entries,
        problems,
    );

    // dpkg-deb -I: the control fields.
    let info = cmd::output(Command::new("dpkg-deb").args(["-I", deb]))?;
    eprintln!("$ dpkg-deb -I {deb}\n{info}");
    let fields = control_fields(&info);
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    // md5sums: every shipped regular file but the conffiles, so dpkg --verify can check them.
    let sums =
        cmd::output(Command::new("dpkg-deb").args(["--info", deb, "md5sums"])).unwrap_or_default();
    let regular = entries.iter().filter(|(_, e)| e.kind == '-').count();
    let conffiles = cmd::output(Command::new("dpkg-deb").args(["--info", deb, "conffiles"]))
        .unwrap_or_default()
        .lines()
        .count();
    problems.check(sums.lines().count() == regular - conffiles, || {
        format!(
            "{label}: md5sums lists {} files; the package has {regular} regular files, {conffiles} \
             of them conffiles",
            sums.lines().count()
        )
    });
    problems.check(field("Package") == BIN, || {
        format!("{label}: Package is {:?}", field("Package"))
    });
    problems.check(field("Version") == packages.deb_version(), || {
        format!(
            "{label}: Version is {:?}, expected {:?}",
            field("Version"),
            packages.deb_version()
        )
    });
    problems.check(field("Architecture") == packages.deb_arch, || {
        format!(
            "{label}: Architecture is {:?}, expected {:?}",
            field("Architecture"),
            packages.deb_arch
        )
    });
    problems.check(field("Maintainer").contains('@'), || {
        format!(
            "{label}: Maintainer {:?} has no address",
            field("Maintainer")
        )
    });
    let depends = relation_names(field("Depends"));
    for name in DEB_DEPENDS {
        problems.check(depends.contains(name), || {
            format!("{label}: Depends {:?} lacks {name}", field("Depends"))
        });
    }

    // The control archive: conffiles and maintainer scripts.
    let control = scratch_dir(packages, "deb-control")?;
    cmd::output(Command::new("dpkg-deb").args(["-e", deb, control.as_str()]))?;
    let conffiles: BTreeSet<String> = std::fs::read_to_string(control.join("conffiles"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let expected_conffiles: BTreeSet<String> = shipped
        .iter()
        .filter(|f| f.kind == Some(Kind::Config))
        .map(|f| f.dest.clone())
        .collect();
    problems.check(conffiles == expected_conffiles, || {
        format!("{label}: conffiles are {conffiles:?}, expected {expected_conffiles:?}")
    });
    check_deb_scripts(label, &control, problems);

    let tree = scratch_dir(packages, "deb-tree")?;
    cmd::output(Command::new("dpkg-deb").args(["-x", deb, tree.as_str()]))?;
    check_contents(label, packages, &shipped, &tree, problems);
    Ok(())
}

fn check_deb_scripts(label: &str, control: &Utf8Path, problems: &mut Problems) {
    let root = cmd::project_root();
    let mut scripts = BTreeMap::new();
    for name in ["postinst", "prerm", "postrm"] {
        let path = control.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            problems
                .0
                .push(format!("{label}: no {name} maintainer script"));
            continue;
        };
        check_shell_syntax(label, name, &text, problems);
        let mode = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0);
        problems.check(mode == 0o755, || {
            format!("{label}: {name} has mode {mode:04o}, expected 0755")
        });
        // The hand-written part of debian/NAME is there verbatim, before the generated part.
        let source = std::fs::read_to_string(root.join("debian").join(name)).unwrap_or_default();
        let handwritten = source.split("#DEBHELPER#").next().unwrap_or_default();
        problems.check(
            !handwritten.is_empty() && text.starts_with(handwritten),
            || {
                format!(
                    "{label}: {name} does not start with the hand-written part of debian/{name}"
                )
            },
        );
        problems.check(!text.contains("#DEBHELPER#"), || {
            format!("{label}: {name} still contains the #DEBHELPER# token")
        });
        scripts.insert(name, text);
    }
    let postinst = scripts.get("postinst").cloned().unwrap_or_default();
    let prerm = scripts.get("prerm").cloned().unwrap_or_default();
    problems.check(postinst.contains("pipelock-containment apply"), || {
        format!("{label}: postinst does not run `pipelock-containment apply`")
    });
    problems.check(
        postinst.contains(&format!(
            "systemd-sysusers ${{DPKG_ROOT:+--root=\"$DPKG_ROOT\"}} {BIN}.conf"
        )),
        || format!("{label}: postinst does not create the users from {BIN}.conf"),
    );
    // Every unit the package enables goes through deb-systemd-helper (policy-rc.d, masks).
    for unit in pipelock_containment::plan::UNITS {
        problems.check(
            postinst.contains(&format!("deb-systemd-helper enable {unit}")),
            || format!("{label}: postinst does not enable {unit}"),
        );
    }
    // The boot unit: started (a no-op when active), never restarted or stopped by an upgrade.
    let boot = BOOT_UNIT;
    for line in postinst
        .lines()
        .filter(|l| l.contains("deb-systemd-invoke"))
    {
        if line.contains(boot) {
            problems.check(
                line.trim() == format!("deb-systemd-invoke start {boot} >/dev/null || true"),
                || format!("{label}: postinst acts on {boot} other than by `start`: {line:?}"),
            );
        }
    }
    problems.check(
        postinst.contains(&format!("deb-systemd-invoke start {boot}")),
        || format!("{label}: postinst does not start {boot}"),
    );
    let mut guard = "";
    for line in prerm.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("if ") {
            guard = trimmed;
        }
        if trimmed.starts_with("deb-systemd-invoke stop") && trimmed.contains(boot) {
            problems.check(guard.contains("\"$1\" = remove"), || {
                format!("{label}: prerm stops {boot} outside `remove` (guard {guard:?}): an upgrade would drop the rule")
            });
        }
    }
}

/// "Key: value" lines of `dpkg-deb -I` (indented by one space there).
fn control_fields(info: &str) -> BTreeMap<String, String> {
    info.lines()
        .filter_map(|l| {
            let l = l.strip_prefix(' ')?;
            let (key, value) = l.split_once(": ")?;
            (!key.contains(' ')).then(|| (key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// Package names in a Depends-style field: "libc6 (>= 2.34), nftables" -> {libc6, nftables}.
fn relation_names(field: &str) -> BTreeSet<String> {
    field
        .split([',', '|'])
        .filter_map(|part| part.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn check_rpm(packages: &Packages, problems: &mut Problems) -> Result<()> {
    let rpm = packages.rpm.as_str();
    let label = packages.rpm.file_name().unwrap_or(rpm).to_owned();
    let label = label.as_str();
    let query = |format: &str| {
        cmd::output(Command::new("rpm").args(["-qp", "--nosignature", "--qf", format, rpm]))
    };

    eprintln!(
        "$ rpm -qlp {rpm}\n{}",
        cmd::output(Command::new("rpm").args(["-qlp", "--nosignature", rpm]))?
    );
    let listing = query(
        "[%{FILEMODES:perms}|%{FILEUSERNAME}|%{FILEGROUPNAME}|%{FILEFLAGS:fflags}|%{FILENAMES}\n]",
    )?;
    let mut entries = BTreeMap::new();
    let mut flags = BTreeMap::new();
    let mut ghosts = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.splitn(5, '|').collect();
        let [perms, owner, group, fflags, path] = fields[..] else {
            problems
                .0
                .push(format!("{label}: cannot read file line {line:?}"));
            continue;
        };
        let Some((kind, mode)) = parse_perms(perms) else {
            problems
                .0
                .push(format!("{label}: cannot read the mode in {line:?}"));
            continue;
        };
        let entry = Entry {
            kind,
            mode,
            owner: owner.into(),
            group: group.into(),
        };
        if fflags == "g" {
            ghosts.insert(path.to_owned(), entry);
        } else {
            entries.insert(path.to_owned(), entry);
            flags.insert(path.to_owned(), fflags.to_owned());
        }
    }
    let shipped = shipped(Packager::Rpm)?;
    check_entries(
        label,
        &expected_files(&shipped, Packager::Rpm),
        &entries,
        problems,
    );
    check_rpm_ownership(label, packages, &entries, &ghosts, problems)?;
    let kinds: BTreeMap<&str, Option<Kind>> =
        shipped.iter().map(|f| (f.dest.as_str(), f.kind)).collect();
    for (path, flag) in &flags {
        let expected = match kinds.get(path.as_str()).copied().flatten() {
            Some(Kind::Config) => "cn",
            Some(Kind::Doc) => "d",
            Some(Kind::License) => "l",
            None => "",
        };
        problems.check(flag == expected, || {
            format!("{label}: {path} has file flags {flag:?}, expected {expected:?} (c = config, n = noreplace, d = doc, l = license)")
        });
    }

    let info = cmd::output(Command::new("rpm").args(["-qip", "--nosignature", rpm]))?;
    eprintln!("$ rpm -qip {rpm}\n{info}");
    let header = query("%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}")?;
    let expected = format!("{BIN}|{}|{RELEASE}|{}", packages.version, packages.rpm_arch);
    problems.check(header == expected, || {
        format!("{label}: name|version|release|arch is {header:?}, expected {expected:?}")
    });

    let requires_text =
        cmd::output(Command::new("rpm").args(["-qp", "--nosignature", "--requires", rpm]))?;
    let requires = relation_names(&requires_text.lines().collect::<Vec<_>>().join(","));
    for name in RPM_REQUIRES {
        problems.check(requires.contains(name), || {
            format!("{label}: Requires lacks {name}: {requires:?}")
        });
    }
    problems.check(!requires.contains("adduser"), || {
        format!("{label}: requires adduser, which RPM distros do not have")
    });
    let changelog = query("[%{CHANGELOGNAME}\n]")?;
    let expected = format!("- {}-{RELEASE}", packages.version);
    problems.check(
        changelog
            .lines()
            .next()
            .is_some_and(|l| l.ends_with(&expected)),
        || format!("{label}: the newest %changelog entry is not {expected}: {changelog:?}"),
    );
    let description = query("%{DESCRIPTION}")?;
    let summary = query("%{SUMMARY}")?;
    problems.check(description.len() > 2 * summary.len(), || {
        format!("{label}: the description is not an extended one: {description:?}")
    });
    let phase_requires = query("[%{REQUIRENAME} %{REQUIREFLAGS:deptype}\n]")?;

    eprintln!(
        "$ rpm -qp --scripts {rpm}\n{}",
        cmd::output(Command::new("rpm").args(["-qp", "--nosignature", "--scripts", rpm]))?
    );
    let root = cmd::project_root();
    for (tag, name) in [
        ("PREIN", "pre"),
        ("POSTIN", "post"),
        ("PREUN", "preun"),
        ("POSTUN", "postun"),
    ] {
        let text = query(&format!("%{{{tag}}}"))?;
        if text.trim() == "(none)" || text.trim().is_empty() {
            problems.0.push(format!("{label}: no %{name} scriptlet"));
            continue;
        }
        check_shell_syntax(label, &format!("%{name}"), &text, problems);
        for (program, package) in SCRIPTLET_PROGRAMS {
            let calls = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| {
                    l.split(|c: char| !(c.is_alphanumeric() || c == '-'))
                        .any(|w| w == *program)
                });
            let declared = phase_requires.lines().any(|l| {
                l.split_once(' ').is_some_and(|(dep, kinds)| {
                    dep == *package && kinds.split(',').any(|k| k == name)
                })
            });
            problems.check(!calls || declared, || {
                format!("{label}: %{name} calls {program} but has no Requires({name}): {package}")
            });
        }
        let handwritten = std::fs::read_to_string(root.join("rpm").join(format!("{name}.sh")))
            .unwrap_or_default();
        problems.check(
            !handwritten.trim().is_empty() && text.contains(handwritten.trim_end()),
            || format!("{label}: %{name} does not contain rpm/{name}.sh"),
        );
        match name {
            "pre" => {
                let sysusers_text = sysusers::render(&packages.config);
                problems.check(text.contains(&sysusers_text), || {
                    format!("{label}: %pre does not create the users of the packaged config")
                });
            }
            "post" => {
                problems.check(text.contains("pipelock-containment apply"), || {
                    format!("{label}: %post does not run `pipelock-containment apply`")
                });
                let preset = crate::rpm_scripts::preset_text();
                for unit in pipelock_containment::plan::UNITS {
                    problems.check(
                        text.contains("systemctl --no-reload preset")
                            && text.contains(unit)
                            && preset.contains(&format!("enable {unit}\n")),
                        || format!("{label}: %post does not preset {unit}"),
                    );
                }
            }
            _ => {}
        }
        for line in text.lines().filter(|l| l.contains(BOOT_UNIT)) {
            problems.check(!line.contains("restart"), || {
                format!("{label}: %{name} restarts {BOOT_UNIT}: {line:?}")
            });
        }
    }

    let tree = scratch_dir(packages, "rpm-tree")?;
    unpack_rpm(&packages.rpm, &tree)?;
    check_contents(label, packages, &shipped, &tree, problems);
    Ok(())
}

/// The programs the RPM scriptlets may call and the Fedora package each comes from: a call
/// needs `Requires(phase)` on it, so the scriptlet can run in the middle of a transaction.
const SCRIPTLET_PROGRAMS: &[(&str, &str)] = &[
    ("systemctl", "systemd"),
    ("systemd-sysusers", "systemd"),
    ("apply", "nftables"),
    ("apply", "sudo"),
    ("rm", "coreutils"),
    ("useradd", "shadow-utils"),
    ("groupadd", "shadow-utils"),
    ("userdel", "shadow-utils"),
    ("groupdel", "shadow-utils"),
];

/// The .rpm owns the directories only it puts files in, and lists what `apply` generates as
/// %ghost (with the state directory), so `rpm -qf` answers for them and erase removes them.
fn check_rpm_ownership(
    label: &str,
    packages: &Packages,
    entries: &BTreeMap<String, Entry>,
    ghosts: &BTreeMap<String, Entry>,
    problems: &mut Problems,
) -> Result<()> {
    let mut expected: BTreeMap<String, (char, u32)> =
        crate::rpm_package::ghost_files(&packages.config)?
            .into_iter()
            .map(|(path, mode)| (path, ('-', u32::from(mode))))
            .collect();
    expected.insert(paths::STATE_DIR.to_owned(), ('d', 0o755));
    let found: BTreeMap<String, (char, u32)> = ghosts
        .iter()
        .map(|(p, e)| (p.clone(), (e.kind, e.mode)))
        .collect();
    problems.check(found == expected, || {
        format!(
            "{label}: the %ghost entries are {found:?}, expected what apply writes: {expected:?}"
        )
    });
    let dirs: BTreeSet<&str> = entries
        .iter()
        .filter(|(_, e)| e.kind == 'd')
        .map(|(p, _)| p.as_str())
        .collect();
    for path in entries.keys() {
        let parent = Utf8Path::new(path)
            .parent()
            .map(Utf8Path::as_str)
            .unwrap_or("/");
        let ours = parent.contains(BIN) || parent.ends_with("nftables.service.d");
        problems.check(!ours || dirs.contains(parent), || {
            format!("{label}: {path} is in {parent}, which the package does not own (%dir)")
        });
    }
    for dir in &dirs {
        problems.check(
            entries.keys().any(|p| p.starts_with(&format!("{dir}/"))),
            || format!("{label}: owns the empty directory {dir}"),
        );
    }
    Ok(())
}

/// `rpm2archive RPM | tar -x` into `dir` (Debian's rpm2cpio exits 1 on these packages even
/// though it unpacks them; rpm2archive reports honestly).
fn unpack_rpm(rpm: &Utf8Path, dir: &Utf8Path) -> Result<()> {
    let input = std::fs::File::open(rpm).with_context(|| format!("cannot open {rpm}"))?;
    let mut rpm2archive = Command::new("rpm2archive")
        .args(["-n", "-"])
        .stdin(input)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start rpm2archive")?;
    let tar = Command::new("tar")
        .args(["-x", "-f", "-", "-C", dir.as_str()])
        .stdin(rpm2archive.stdout.take().unwrap())
        .status()
        .context("cannot start tar")?;
    let status = rpm2archive.wait()?;
    if !status.success() || !tar.success() {
        bail!("cannot unpack {rpm} (rpm2archive {status}, tar {tar})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_permissions() {
        assert_eq!(parse_perms("-rwxr-xr-x"), Some(('-', 0o755)));
        assert_eq!(parse_perms("drwxr-xr-x"), Some(('d', 0o755)));
        assert_eq!(parse_perms("-rwsr-xr-x"), Some(('-', 0o4755)));
        assert_eq!(parse_perms("-r--r-----"), Some(('-', 0o440)));
        assert_eq!(parse_perms("-rw-r--r-T"), Some(('-', 0o1644)));
        assert_eq!(parse_perms("bogus"), None);
    }

    #[test]
    fn forbidden_paths() {
        assert!(forbidden("/etc/sudoers.d/pipelock-containment").is_some());
        assert!(forbidden("/usr/local/bin/x").is_some());
        assert!(forbidden("/bin/x").is_some());
        assert!(forbidden("/usr/bin/pipelock-containment").is_none());
        assert!(forbidden("/usr/lib/systemd/system/x.service").is_none());
    }

    #[test]
    fn entry_checks_catch_wrong_modes_extra_and_missing_files() {
        let expected: BTreeMap<String, u32> = [
            (format!("/usr/bin/{BIN}"), 0o755),
            (CONFIG_FILE.to_owned(), 0o644),
        ]
        .into();
        let mut entries: BTreeMap<String, Entry> = expected
            .iter()
            .map(|(path, mode)| {
                let entry = Entry {
                    kind: '-',
                    mode: *mode,
                    owner: "root".into(),
                    group: "root".into(),
                };
                (path.clone(), entry)
            })
            .collect();
        let mut problems = Problems::default();
        check_entries("t", &expected, &entries, &mut problems);
        assert!(problems.0.is_empty(), "{:?}", problems.0);

        entries.get_mut(CONFIG_FILE).unwrap().mode = 0o600;
        entries.remove(&format!("/usr/bin/{BIN}"));
        entries.insert(
            "/etc/sudoers.d/pipelock-containment".into(),
            Entry {
                kind: '-',
                mode: 0o440,
                owner: "root".into(),
                group: "root".into(),
            },
        );
        let mut problems = Problems::default();
        check_entries("t", &expected, &entries, &mut problems);
        let text = problems.0.join("\n");
        assert!(
            text.contains("containment.toml has mode 0600, expected 0644"),
            "{text}"
        );
        assert!(
            text.contains("missing /usr/bin/pipelock-containment"),
            "{text}"
        );
        assert!(
            text.contains("the helper generates the sudoers drop-in"),
            "{text}"
        );
        assert!(
            text.contains("unexpected file /etc/sudoers.d/pipelock-containment"),
            "{text}"
        );
    }

    #[test]
    fn reads_control_fields_and_relations() {
        let info = " new Debian package, version 2.0.\n Package: p\n Depends: libc6 (>= 2.34), nftables, sudo | doas\n";
        let fields = control_fields(info);
        assert_eq!(fields["Package"], "p");
        let names = relation_names(&fields["Depends"]);
        assert_eq!(
            names,
            ["doas", "libc6", "nftables", "sudo"]
                .map(String::from)
                .into()
        );
    }
}
