//! What the pool checks about the host it runs on: whether the sandbox uid belongs to one of
//! its login accounts.

/// The host's account database.
const PASSWD: &str = "/etc/passwd";

/// Shells that mean "no login" (`nologin`, `false`, and the special accounts' commands).
const NO_LOGIN_SHELLS: [&str; 5] = ["nologin", "false", "sync", "shutdown", "halt"];

/// The name of the host's login account with `uid`, if there is one: the sandbox uid owns
/// every file a sandbox writes in its user root, so a sandbox could leave programs there that
/// run as that account (setuid) for anyone who can reach them.
pub fn login_account(uid: u32) -> Option<String> {
    login_account_in(&std::fs::read_to_string(PASSWD).ok()?, uid)
}

/// [`login_account`] in the text of a passwd file.
fn login_account_in(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let [name, _, id, _, _, _, shell] = fields[..] else {
            return None;
        };
        let logs_in = !shell.is_empty()
            && !NO_LOGIN_SHELLS
                .iter()
                .any(|no| shell.rsplit('/').next() == Some(*no));
        (id.parse() == Ok(uid) && logs_in).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
svc:x:998:998::/var/lib/svc:/bin/false
odd:x:61000
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";

    #[test]
    fn only_accounts_with_a_real_shell_are_login_accounts() {
        assert_eq!(login_account_in(PASSWD, 1000).as_deref(), Some("alice"));
        assert_eq!(login_account_in(PASSWD, 0).as_deref(), Some("root"));
        for uid in [1, 4, 998, 61000, 65534, 4242] {
            assert_eq!(login_account_in(PASSWD, uid), None, "{uid}");
        }
    }

    #[test]
    fn this_hosts_root_is_a_login_account() {
        // Every Debian machine this runs on has root with a shell; the file path works.
        assert_eq!(login_account(0).as_deref(), Some("root"));
    }
}
