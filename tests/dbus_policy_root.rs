//! Root test: the packaged D-Bus policy, loaded by a real dbus-daemon, refuses the agent and lets another user through.
//!
//! In the sandbox (`testbed::Sandbox`) a system bus runs from the distro's own config with
//! the policy installed where the package puts it, `nobody` as the agent and `daemon` as the
//! operator. dbus-test-tool owns a denied name and an allowed one and answers every call. Not
//! root: prints `SKIPPED` and returns.

use pipelock_containment::config::Config;

#[test]
fn the_policy_refuses_the_agent_name_resolution_over_the_bus() {
    if testbed::skip_unless_root(
        "the_policy_refuses_the_agent_name_resolution_over_the_bus",
        "setpriv to other users",
        &["dbus-daemon", "dbus-send", "dbus-test-tool", "setpriv"],
    ) {
        return;
    }
    let mut config = Config::defaults();
    config.users.agent = "nobody".into();
    let policy = pipelock_containment::render::render_dbus_policy(&config).unwrap();
    let script = format!(
        r#"
fail() {{ echo "ASSERTION FAILED: $*" >&2; exit 1; }}
# The distro's own system bus config (system.conf, system.d) with the policy installed as the
# package installs it, and two stand-in services whose files grant what a daemon's own file
# grants (root owns the name, everyone may call it).
install -d /usr/share/dbus-1/system.d /run/dbus
cat > {dest} <<'POLICY'
{policy}POLICY
for name in org.freedesktop.resolve1 org.example.Allowed; do
    cat > /usr/share/dbus-1/system.d/test-$name.conf <<SERVICE
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root"><allow own="$name"/></policy>
  <policy context="default"><allow send_destination="$name"/></policy>
</busconfig>
SERVICE
done
dbus-daemon --system --nofork --nopidfile --nosyslog 2>/tmp/daemon.log &
for i in $(seq 50); do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.1; done
[ -S /run/dbus/system_bus_socket ] || {{ cat /tmp/daemon.log; fail "dbus-daemon did not start"; }}
dbus-test-tool echo --system --name=org.freedesktop.resolve1 &
dbus-test-tool echo --system --name=org.example.Allowed &
sleep 0.5
call() {{ # USER NAME
    setpriv --reuid "$1" --regid "$(id -g "$1")" --clear-groups \
        dbus-send --system --print-reply --reply-timeout=2000 \
        --dest="$2" / org.freedesktop.resolve1.Manager.ResolveHostname 2>&1
}}
out=$(call daemon org.freedesktop.resolve1) || fail "control: another user cannot reach resolve1: $out"
out=$(call nobody org.example.Allowed) || fail "control: the agent cannot use the bus at all: $out"
out=$(call nobody org.freedesktop.resolve1) && fail "the agent reached resolve1: $out"
echo "$out" | grep -q "AccessDenied" || fail "not refused by the policy: $out"
echo "refused: $out"
echo OK
"#,
        dest = pipelock_containment::account::DBUS_POLICY,
    );
    let out =
        testbed::Sandbox::new("dbus", env!("CARGO_BIN_EXE_pipelock-containment")).must(&script);
    println!("{out}");
    assert!(out.contains("OK"), "{out}");
}
