//! The agent's side of a launch, inside the session unit: who runs, and which file the allowed
//! tool is. The policy (allow-list, PATH, environment) lives in `pipelock_policy::launch`.

use std::os::unix::fs::PermissionsExt;

use camino::{Utf8Path, Utf8PathBuf};
use nix::unistd::{access, AccessFlags, Uid, User};

use pipelock_policy::config::Config;
use pipelock_policy::facts::Account;
use pipelock_policy::launch::{self, Refusal, ToolTarget};

/// The running user, which must be the configured agent user (real and effective UID).
pub fn current_agent(config: &Config) -> Result<Account, Refusal> {
    let uid = Uid::current();
    let wrong = || Refusal::WrongUser {
        expected: config.users.agent.clone(),
        uid: uid.as_raw(),
    };
    if Uid::effective() != uid {
        return Err(wrong());
    }
    let user = User::from_uid(uid).ok().flatten().ok_or_else(wrong)?;
    if user.name != config.users.agent || uid.is_root() {
        return Err(wrong());
    }
    Ok(Account {
        name: user.name,
        uid: uid.as_raw(),
        gid: user.gid.as_raw(),
        home: Utf8PathBuf::from_path_buf(user.dir)
            .unwrap_or_else(|_| config.users.agent_home.clone()),
    })
}

fn is_executable_file(path: &Utf8Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
        && access(path.as_std_path(), AccessFlags::X_OK).is_ok()
}

/// Resolve the tool to a file the agent can execute, never one in the wrapper directory
/// (checked again on the canonical path, so a symlink into it does not count).
pub fn locate(target: &ToolTarget, agent: &Account) -> Result<Utf8PathBuf, Refusal> {
    let (name, found, searched) = match target {
        ToolTarget::Path(path) => (
            path.as_str(),
            Some(path.clone()).filter(|p| is_executable_file(p)),
            vec![path.parent().unwrap_or(path).to_owned()],
        ),
        ToolTarget::Search(name) => {
            let dirs = launch::agent_path(&agent.home);
            let found = launch::find_in_path(name, &dirs, |candidate| {
                is_executable_file(candidate) && !resolves_into_wrapper_dir(candidate)
            });
            (name.as_str(), found, dirs)
        }
    };
    match found {
        Some(program) if !resolves_into_wrapper_dir(&program) => Ok(program),
        _ => Err(Refusal::NotFound {
            tool: name.to_string(),
            searched,
        }),
    }
}

fn resolves_into_wrapper_dir(path: &Utf8Path) -> bool {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|real| Utf8PathBuf::from_path_buf(real).ok())
        .is_some_and(|real| launch::is_in_wrapper_dir(&real))
}
