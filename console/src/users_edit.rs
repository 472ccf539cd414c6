//! Changes to the users file made from the console's admin page: validation, the guard rails
//! (nobody removes or demotes themselves, the last admin stays), and the atomic rewrite.
//!
//! The file is re-read before every change and edited in place (comments, order and hand-made
//! entries are kept); a change made on a view older than the file (its version differs) is
//! refused, so an admin never overwrites what someone else just changed.

use crate::auth::{Role, Users};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Shortest password the console accepts.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest login name.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest display name.
pub const MAX_DISPLAY_CHARS: usize = 128;

/// Why a change was not made: a stable code (the API's `error`) and a sentence.
#[derive(Debug, PartialEq)]
pub struct Refused {
    /// `bad_name`, `bad_display_name`, `bad_password`, `duplicate_name`, `unknown_user`, `stale`,
    /// `last_admin`, `own_account` or `users_file` (the file cannot be read, parsed or written).
    pub code: &'static str,
    /// What was wrong, for a person.
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused { code, message: message.into() }
}

/// One change, as the admin asked for it (passwords already hashed).
#[derive(Debug)]
pub enum Edit {
    /// A new operator.
    Add { name: String, display_name: String, role: Role, password_hash: String },
    /// New display name and / or role.
    Update { name: String, display_name: Option<String>, role: Option<Role> },
    /// A new password.
    Password { name: String, password_hash: String },
    /// Removes the operator.
    Remove { name: String },
}

impl Edit {
    fn target(&self) -> &str {
        match self {
            Edit::Add { name, .. }
            | Edit::Update { name, .. }
            | Edit::Password { name, .. }
            | Edit::Remove { name } => name,
        }
    }
}

/// A login name: not empty, at most 64 characters, no whitespace or control characters.
pub fn check_name(name: &str) -> Result<(), Refused> {
    if name.is_empty() {
        return Err(refused("bad_name", "name: must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(refused("bad_name", format!("name: at most {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refused("bad_name", "name: no spaces or control characters"));
    }
    Ok(())
}

/// A display name: at most 128 characters, no control characters (may be empty: the login name
/// is shown).
pub fn check_display_name(display_name: &str) -> Result<(), Refused> {
    if display_name.chars().count() > MAX_DISPLAY_CHARS {
        return Err(refused("bad_display_name", format!("display_name: at most {MAX_DISPLAY_CHARS} characters")));
    }
    if display_name.chars().any(char::is_control) {
        return Err(refused("bad_display_name", "display_name: no control characters"));
    }
    Ok(())
}

/// A password: at least 10 characters.
pub fn check_password(password: &str) -> Result<(), Refused> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(refused(
            "bad_password",
            format!("password: at least {MIN_PASSWORD_CHARS} characters (a passphrase is best)"),
        ));
    }
    Ok(())
}

/// The version of a users file's text: changes whenever the text does.
pub fn version(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same text gives the same version for the process's lifetime,
    // which is all a version has to do (the page sends back the one it was given).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}-{}", h.finish(), text.len())
}

/// A parse error without the quoted lines of the file (TOML errors quote the line, which may
/// hold a password hash): the position and the reason stay.
pub fn without_file_text(message: &str) -> String {
    let quoted = |l: &str| {
        let t = l.trim_start();
        t.starts_with('|') || t.split_once(" |").is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
    };
    let kept: Vec<&str> =
        message.lines().filter(|l| !quoted(l) && !l.contains("$argon2") && !l.trim().is_empty()).collect();
    kept.join("; ")
}

/// The users file as it is now: its text's version and the operators.
pub fn read(path: &Path) -> Result<(String, Users), Refused> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| refused("users_file", format!("reading users file {}: {e}", path.display())))?;
    let users = Users::parse(&text).map_err(|e| {
        refused("users_file", format!("users file {}: {}", path.display(), without_file_text(&format!("{e:#}"))))
    })?;
    Ok((version(&text), users))
}

/// Applies `edit`, asked for by the admin `by`, to the users file's `text`; returns the new text.
/// Everything outside the operator changed is kept as written.
pub fn apply(text: &str, edit: &Edit, by: &str) -> Result<String, Refused> {
    let users = Users::parse(text)
        .map_err(|e| refused("users_file", format!("users file: {}", without_file_text(&format!("{e:#}")))))?;
    let target = edit.target();
    let existing = users.get(target);
    let admins = users.list().iter().filter(|u| u.role == Role::Admin).count();
    let loses_admin = match edit {
        Edit::Remove { .. } => true,
        Edit::Update { role: Some(r), .. } => *r != Role::Admin,
        _ => false,
    };
    match (edit, existing) {
        (Edit::Add { name, display_name, .. }, None) => {
            check_name(name)?;
            check_display_name(display_name)?;
        }
        (Edit::Add { name, .. }, Some(_)) => {
            return Err(refused("duplicate_name", format!("name: there is already an operator {name:?}")))
        }
        (_, None) => return Err(refused("unknown_user", format!("no operator {target:?}"))),
        (_, Some(u)) => {
            if let Edit::Update { display_name: Some(d), .. } = edit {
                check_display_name(d)?;
            }
            if loses_admin && u.role == Role::Admin {
                let what = if matches!(edit, Edit::Remove { .. }) { "remove" } else { "demote" };
                if admins <= 1 {
                    return Err(refused(
                        "last_admin",
                        format!("cannot {what} {target}: the last admin; make another operator admin first"),
                    ));
                }
                if target == by {
                    return Err(refused(
                        "own_account",
                        format!("you cannot {what} your own account; another admin can"),
                    ));
                }
            }
            if target == by && matches!(edit, Edit::Remove { .. }) {
                return Err(refused("own_account", "you cannot remove your own account; another admin can"));
            }
        }
    }

    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        refused("users_file", format!("users file: {}", without_file_text(&e.to_string())))
    })?;
    if let Edit::Add { name, display_name, role, password_hash } = edit {
        let mut t = toml_edit::Table::new();
        t["name"] = toml_edit::value(name.as_str());
        t["display_name"] = toml_edit::value(display_name.as_str());
        t["role"] = toml_edit::value(role.as_str());
        t["password_hash"] = toml_edit::value(password_hash.as_str());
        t.decor_mut().set_prefix("\n");
        match doc.get_mut("user") {
            Some(item) => users_array(item)?.push(t),
            None => {
                let mut a = toml_edit::ArrayOfTables::new();
                a.push(t);
                doc.insert("user", toml_edit::Item::ArrayOfTables(a));
            }
        }
    } else {
        let item = doc.get_mut("user").ok_or_else(|| refused("unknown_user", format!("no operator {target:?}")))?;
        let list = users_array(item)?;
        let i = list
            .iter()
            .position(|t| t.get("name").and_then(|v| v.as_str()) == Some(target))
            .ok_or_else(|| refused("unknown_user", format!("no operator {target:?}")))?;
        match edit {
            Edit::Remove { .. } => {
                list.remove(i);
            }
            Edit::Update { display_name, role, .. } => {
                let t = list.get_mut(i).ok_or_else(|| refused("unknown_user", format!("no operator {target:?}")))?;
                if let Some(d) = display_name {
                    t["display_name"] = toml_edit::value(d.as_str());
                }
                if let Some(r) = role {
                    t["role"] = toml_edit::value(r.as_str());
                }
            }
            Edit::Password { password_hash, .. } => {
                let t = list.get_mut(i).ok_or_else(|| refused("unknown_user", format!("no operator {target:?}")))?;
                t["password_hash"] = toml_edit::value(password_hash.as_str());
            }
            Edit::Add { .. } => {}
        }
    }
    let out = doc.to_string();
    // What is written must load: never leave a file the console could not start with.
    Users::parse(&out).map_err(|e| {
        refused(
            "users_file",
            format!("the changed users file would not load: {}", without_file_text(&format!("{e:#}"))),
        )
    })?;
    Ok(out)
}

fn users_array(item: &mut toml_edit::Item) -> Result<&mut toml_edit::ArrayOfTables, Refused> {
    item.as_array_of_tables_mut().ok_or_else(|| {
        refused("users_file", "users file: write the operators as [[user]] tables to edit them in the console")
    })
}

/// Re-reads the users file, refuses a change made on a stale view (`seen` is the version the
/// admin's page was given; `None`: apply to the file as it is now), applies `edit` and rewrites
/// the file atomically. Returns the new version and operators.
pub fn commit(path: &Path, edit: &Edit, by: &str, seen: Option<&str>) -> Result<(String, Users), Refused> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| refused("users_file", format!("reading users file {}: {e}", path.display())))?;
    if seen.is_some_and(|v| v != version(&text)) {
        return Err(refused(
            "stale",
            "the users file changed since this list was loaded (another admin or a hand edit); reload and try again",
        ));
    }
    let new = apply(&text, edit, by)?;
    write_atomic(path, &new)
        .map_err(|e| refused("users_file", format!("writing users file {}: {e}", path.display())))?;
    let users = Users::parse(&new)
        .map_err(|e| refused("users_file", format!("users file: {}", without_file_text(&format!("{e:#}")))))?;
    Ok((version(&new), users))
}

/// Replaces the file at `path` (following a symlink to the real file) with `text`: written to a
/// temporary file in the same directory with mode 0600, flushed to disk, renamed over the old
/// one, and the directory flushed. A crash leaves the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "users".into());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", &crate::auth::random_token()[..12]));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        #[cfg(unix)]
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::fs::rename(&tmp, &path)?;
        // The rename itself reaches the disk with the directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_password;

    fn file(h: &str) -> String {
        format!(
            "# operators (hand-written comment)\n\n[[user]]\nname = \"root\"\nrole = \"admin\"\npassword_hash = \"{h}\"\n\n\
             [[user]]\nname = \"li\"\ndisplay_name = \"李伟\" # duty room A\nrole = \"officer\"\npassword_hash = \"{h}\"\n"
        )
    }

    #[test]
    fn names_and_passwords_are_checked_with_reasons() {
        assert_eq!(check_name("").unwrap_err().code, "bad_name");
        assert!(check_name("li wei").unwrap_err().message.contains("no spaces"));
        assert!(check_name("li\u{7}").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name(&"x".repeat(64)).is_ok() && check_name("王芳").is_ok());
        let e = check_password("short-pw1").unwrap_err();
        assert_eq!(e.code, "bad_password");
        assert!(e.message.contains("at least 10 characters"), "{}", e.message);
        assert!(check_password("十个汉字的密码短语呀").is_ok(), "characters, not bytes");
        assert!(check_display_name("李伟").is_ok() && check_display_name("a\nb").is_err());
    }

    #[test]
    fn edits_keep_the_rest_of_the_file_and_respect_the_guard_rails() {
        let h = hash_password("not-the-pass").unwrap();
        let text = file(&h);
        let add = Edit::Add {
            name: "wang".into(),
            display_name: "王芳".into(),
            role: Role::Officer,
            password_hash: h.clone(),
        };
        let added = apply(&text, &add, "root").unwrap();
        assert!(added.starts_with("# operators (hand-written comment)"), "{added}");
        assert!(added.contains("display_name = \"李伟\" # duty room A"), "{added}");
        let users = Users::parse(&added).unwrap();
        assert_eq!(users.get("wang").map(|u| (u.role, u.display_name.as_str())), Some((Role::Officer, "王芳")));
        assert_eq!(apply(&added, &add, "root").unwrap_err().code, "duplicate_name");

        let promote = Edit::Update { name: "li".into(), display_name: None, role: Some(Role::Admin) };
        let two_admins = apply(&added, &promote, "root").unwrap();
        assert_eq!(Users::parse(&two_admins).unwrap().get("li").unwrap().role, Role::Admin);

        // Nobody removes or demotes themselves; the last admin stays one.
        let demote_root = Edit::Update { name: "root".into(), display_name: None, role: Some(Role::Viewer) };
        assert_eq!(apply(&two_admins, &demote_root, "root").unwrap_err().code, "own_account");
        assert!(apply(&two_admins, &demote_root, "li").is_ok());
        assert_eq!(apply(&added, &demote_root, "someone").unwrap_err().code, "last_admin");
        assert_eq!(apply(&added, &demote_root, "root").unwrap_err().code, "last_admin");
        assert_eq!(apply(&added, &Edit::Remove { name: "root".into() }, "ghost").unwrap_err().code, "last_admin");
        assert_eq!(apply(&added, &Edit::Remove { name: "wang".into() }, "wang").unwrap_err().code, "own_account");
        let removed = apply(&added, &Edit::Remove { name: "wang".into() }, "root").unwrap();
        assert!(Users::parse(&removed).unwrap().get("wang").is_none());
        assert_eq!(apply(&removed, &Edit::Remove { name: "wang".into() }, "root").unwrap_err().code, "unknown_user");
        let bad = Edit::Add { name: "a b".into(), display_name: String::new(), role: Role::Viewer, password_hash: h };
        assert_eq!(apply(&text, &bad, "root").unwrap_err().code, "bad_name");
    }

    #[test]
    fn a_broken_users_file_is_reported_without_its_hashes() {
        let h = hash_password("not-the-pass").unwrap();
        let broken = format!("[[user]]\nname = \"li\"\nrole = \"officer\"\npassword_hash = \"{h}\" oops\n");
        let edit = Edit::Remove { name: "li".into() };
        let e = apply(&broken, &edit, "root").unwrap_err();
        assert_eq!(e.code, "users_file");
        assert!(e.message.contains("line 4") && !e.message.contains("argon2"), "{}", e.message);
    }

    #[test]
    fn commit_rewrites_atomically_with_mode_0600_and_refuses_a_stale_view() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let h = hash_password("not-the-pass").unwrap();
        std::fs::write(&path, file(&h)).unwrap();
        let (v0, _) = read(&path).unwrap();
        let new_pw = hash_password("a-new-passphrase").unwrap();
        let edit = Edit::Password { name: "li".into(), password_hash: new_pw };
        let (v1, users) = commit(&path, &edit, "root", Some(&v0)).unwrap();
        assert_ne!(v0, v1);
        assert!(users.verify("li", "a-new-passphrase").is_some());
        let on_disk = std::fs::read_to_string(&path).unwrap();
        assert!(!on_disk.contains("a-new-passphrase") && on_disk.contains("# operators"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "users.toml")
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

        // A hand edit in between: the page's version is stale, nothing is written.
        std::fs::write(&path, format!("{on_disk}\n# hand edit\n")).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        let remove = Edit::Remove { name: "li".into() };
        assert_eq!(commit(&path, &remove, "root", Some(&v1)).unwrap_err().code, "stale");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        let (v2, _) = read(&path).unwrap();
        let (_, users) = commit(&path, &remove, "root", Some(&v2)).unwrap();
        assert!(users.get("li").is_none());
        assert!(std::fs::read_to_string(&path).unwrap().contains("# hand edit"));
    }
}
