//! `cargo xtask repo`: a signed apt repository (apt-ftparchive, gpg) and a signed dnf repository
//! (rpmsign, createrepo_c) from built packages, as plain files any web server can serve.
//!
//! Layout under the output directory:
//! - `apt/pool/main/*.deb`, `apt/dists/stable/{Release,InRelease,Release.gpg}`,
//!   `apt/dists/stable/main/binary-ARCH/Packages{,.gz}`
//! - `rpm/*.rpm` (signed), `rpm/repodata/` (with `repomd.xml.asc`)
//! - `pipelock-containment-archive-keyring.gpg` (binary, for apt `signed-by`) and `.asc`

use std::fs;
use std::process::Command;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::proc::{run, Guard};

/// The apt suite and component the repository publishes.
pub const SUITE: &str = "stable";
pub const COMPONENT: &str = "main";
/// The public key file names, at the top of the repository.
pub const KEYRING: &str = "pipelock-containment-archive-keyring.gpg";
pub const KEY_ASC: &str = "pipelock-containment-archive-keyring.asc";

/// A signing key: its id, and the GnuPG home it lives in (None: the user's default).
pub struct SigningKey {
    pub id: String,
    pub gnupghome: Option<Utf8PathBuf>,
    _cleanup: Option<Guard>,
}

impl SigningKey {
    /// A key the user supplies, from their own keyring.
    pub fn user(id: &str) -> SigningKey {
        SigningKey {
            id: id.to_owned(),
            gnupghome: None,
            _cleanup: None,
        }
    }

    /// A fresh passphrase-less key in a temporary GnuPG home, removed (and its agent ended)
    /// when the key is dropped. For tests only.
    pub fn throwaway() -> Result<SigningKey> {
        let home = Utf8PathBuf::from(format!("/tmp/plc-e2e-gnupg-{}", std::process::id()));
        if home.exists() {
            fs::remove_dir_all(&home)?;
        }
        fs::create_dir_all(&home)?;
        set_mode(&home, 0o700)?;
        let home2 = home.clone();
        let cleanup = super::proc::guard("throwaway GnuPG home", move || {
            let _ = Command::new("gpgconf")
                .args(["--homedir", home2.as_str(), "--kill", "all"])
                .status();
            let _ = fs::remove_dir_all(&home2);
        });
        run(Command::new("gpg")
            .args([
                "--homedir",
                home.as_str(),
                "--batch",
                "--pinentry-mode",
                "loopback",
            ])
            .args(["--passphrase", "", "--quick-gen-key"])
            .arg("pipelock-containment test repository <repo-test@example.invalid>")
            .args(["rsa3072", "sign", "2d"]))?;
        let listing = run(Command::new("gpg").args([
            "--homedir",
            home.as_str(),
            "--batch",
            "--with-colons",
            "--list-secret-keys",
        ]))?;
        let id = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .context("no fingerprint in the throwaway key listing")?
            .to_owned();
        Ok(SigningKey {
            id,
            gnupghome: Some(home),
            _cleanup: Some(cleanup),
        })
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        if let Some(h) = &self.gnupghome {
            c.args(["--homedir", h.as_str()]);
        }
        c.args(["--batch", "--yes", "--local-user", &self.id]);
        c
    }
}

fn set_mode(p: &Utf8Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {p}"))
}

fn packages(dir: &Utf8Path, ext: &str) -> Result<Vec<Utf8PathBuf>> {
    let mut v = Vec::new();
    for e in dir
        .read_dir_utf8()
        .with_context(|| format!("cannot read {dir}"))?
    {
        let e = e?;
        if e.file_type()?.is_file() && e.file_name().ends_with(ext) {
            v.push(e.into_path());
        }
    }
    v.sort();
    Ok(v)
}

/// Writes the signed apt and dnf repositories for every .deb and .rpm in `input` into `out`
/// (replaced). Fails when there is no package at all.
pub fn build(input: &Utf8Path, out: &Utf8Path, key: &SigningKey) -> Result<()> {
    let debs = packages(input, ".deb")?;
    let rpms = packages(input, ".rpm")?;
    if debs.is_empty() && rpms.is_empty() {
        bail!("no .deb or .rpm in {input}: run `cargo xtask dist` first");
    }
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("cannot remove {out}"))?;
    }
    fs::create_dir_all(out)?;
    run(key
        .gpg()
        .args(["--output", out.join(KEYRING).as_str(), "--export", &key.id]))
    .context("cannot export the public key")?;
    run(key.gpg().args([
        "--armor",
        "--output",
        out.join(KEY_ASC).as_str(),
        "--export",
        &key.id,
    ]))?;
    if !debs.is_empty() {
        apt(&debs, &out.join("apt"), key)?;
    }
    if !rpms.is_empty() {
        dnf(&rpms, &out.join("rpm"), key)?;
    }
    Ok(())
}

fn apt(debs: &[Utf8PathBuf], out: &Utf8Path, key: &SigningKey) -> Result<()> {
    let pool = out.join("pool").join(COMPONENT);
    fs::create_dir_all(&pool)?;
    let mut archs = std::collections::BTreeSet::new();
    for d in debs {
        fs::copy(d, pool.join(d.file_name().unwrap_or("x.deb")))?;
        let a = run(Command::new("dpkg-deb").args(["--field", d.as_str(), "Architecture"]))?;
        let a = a.trim();
        if a != "all" {
            archs.insert(a.to_owned());
        }
    }
    if archs.is_empty() {
        let host = run(Command::new("dpkg").arg("--print-architecture"))?;
        archs.insert(host.trim().to_owned());
    }
    let dist = out.join("dists").join(SUITE);
    for a in &archs {
        let dir = dist.join(COMPONENT).join(format!("binary-{a}"));
        fs::create_dir_all(&dir)?;
        let packages = run(Command::new("apt-ftparchive")
            .current_dir(out)
            .args(["--arch", a, "packages", "pool"]))?;
        fs::write(dir.join("Packages"), &packages)?;
        run(Command::new("gzip").args(["-9nk", dir.join("Packages").as_str()]))?;
    }
    let archs: Vec<_> = archs.into_iter().collect();
    let release = run(Command::new("apt-ftparchive")
        .current_dir(out)
        .args([
            "-o",
            "APT::FTPArchive::Release::Origin=pipelock-containment",
        ])
        .args(["-o", "APT::FTPArchive::Release::Label=pipelock-containment"])
        .arg("-o")
        .arg(format!("APT::FTPArchive::Release::Suite={SUITE}"))
        .arg("-o")
        .arg(format!("APT::FTPArchive::Release::Codename={SUITE}"))
        .arg("-o")
        .arg(format!("APT::FTPArchive::Release::Components={COMPONENT}"))
        .arg("-o")
        .arg(format!(
            "APT::FTPArchive::Release::Architectures={}",
            archs.join(" ")
        ))
        .args(["release", dist.strip_prefix(out)?.as_str()]))?;
    fs::write(dist.join("Release"), release)?;
    run(key.gpg().args([
        "--clearsign",
        "--output",
        dist.join("InRelease").as_str(),
        dist.join("Release").as_str(),
    ]))?;
    run(key.gpg().args([
        "--armor",
        "--detach-sign",
        "--output",
        dist.join("Release.gpg").as_str(),
        dist.join("Release").as_str(),
    ]))?;
    Ok(())
}

fn dnf(rpms: &[Utf8PathBuf], out: &Utf8Path, key: &SigningKey) -> Result<()> {
    fs::create_dir_all(out)?;
    let mut copies = Vec::new();
    for r in rpms {
        let dst = out.join(r.file_name().unwrap_or("x.rpm"));
        fs::copy(r, &dst)?;
        copies.push(dst);
    }
    let mut sign = Command::new("rpmsign");
    // rpm's default gpg path differs between distros (gpg2 on some): use the one on PATH.
    let gpg = run(Command::new("sh").args(["-c", "command -v gpg"]))?;
    sign.arg("--define").arg(format!("__gpg {}", gpg.trim()));
    sign.arg("--define").arg(format!("_gpg_name {}", key.id));
    if let Some(h) = &key.gnupghome {
        sign.arg("--define").arg(format!("_gpg_path {h}"));
    }
    sign.arg("--addsign").args(&copies);
    run(&mut sign)?;
    run(Command::new("createrepo_c").args(["--quiet", out.as_str()]))?;
    let repomd = out.join("repodata").join("repomd.xml");
    run(key.gpg().args([
        "--armor",
        "--detach-sign",
        "--output",
        format!("{repomd}.asc").as_str(),
        repomd.as_str(),
    ]))?;
    Ok(())
}

/// Writes a copy of `deb` whose version is `version`, into `out_dir`; returns its path. Used to
/// publish a "higher version" for upgrade tests when the build has no other way to make one.
pub fn rebuild_deb_with_version(
    deb: &Utf8Path,
    version: &str,
    work: &Utf8Path,
    out_dir: &Utf8Path,
) -> Result<Utf8PathBuf> {
    if work.exists() {
        fs::remove_dir_all(work)?;
    }
    run(Command::new("dpkg-deb").args(["--raw-extract", deb.as_str(), work.as_str()]))?;
    let control = work.join("DEBIAN/control");
    let text = fs::read_to_string(&control)?;
    let mut new = String::new();
    for l in text.lines() {
        if l.starts_with("Version:") {
            new.push_str(&format!("Version: {version}\n"));
        } else {
            new.push_str(l);
            new.push('\n');
        }
    }
    fs::write(&control, new)?;
    let arch = run(Command::new("dpkg-deb").args(["--field", deb.as_str(), "Architecture"]))?;
    let out = out_dir.join(format!(
        "pipelock-containment_{version}_{}.deb",
        arch.trim()
    ));
    run(Command::new("dpkg-deb").args([
        "--root-owner-group",
        "-Zgzip",
        "--build",
        work.as_str(),
        out.as_str(),
    ]))?;
    fs::remove_dir_all(work)?;
    Ok(out)
}
