//! `riskwatch console init-users`: the first users file of a new installation — one admin with
//! a generated password, shown once — so that nobody copies an example file or ships a default
//! password. Operators are managed on the console's admin page from then on.

use crate::auth::{hash_password, Users};
use crate::users_edit::check_name;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `riskwatch console init-users` options.
#[derive(clap::Args)]
pub struct InitUsersArgs {
    /// Users file to create (mode 0600); refused if it exists.
    #[arg(long)]
    users: PathBuf,
    /// Login name of the first admin.
    #[arg(long, default_value = "admin")]
    admin: String,
    /// Their display name.
    #[arg(long, default_value = "Administrator")]
    display_name: String,
}

/// Runs `riskwatch console init-users`: writes the file and prints the password once.
pub fn run(args: InitUsersArgs) -> Result<()> {
    let password = crate::random_password();
    create(&args.users, &args.admin, &args.display_name, &password)?;
    println!(
        "wrote {} (mode 600): admin {:?}\none-time password: {password}\n\
         Log in with it and set your own on the 值班员 / Operators tab; it is not shown again.",
        args.users.display(),
        args.admin
    );
    Ok(())
}

/// Creates the users file at `path` with one admin whose password is `password`; refuses to
/// touch an existing file.
pub fn create(path: &Path, admin: &str, display_name: &str, password: &str) -> Result<()> {
    check_name(admin).map_err(|r| anyhow::anyhow!("--admin: {}", r.message))?;
    crate::users_edit::check_display_name(display_name)
        .map_err(|r| anyhow::anyhow!("--display-name: {}", r.message))?;
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let text = format!(
        "# Duty console operators (docs/console.md), written by `riskwatch console init-users`.\n\
         # Manage them on the console's 值班员 / Operators tab, which rewrites this file.\n\n\
         [[user]]\nname = {}\ndisplay_name = {}\nrole = \"admin\"\npassword_hash = {}\n",
        quote(admin),
        quote(display_name),
        quote(&hash_password(password)?)
    );
    // What is written must load.
    Users::parse(&text).context("the new users file")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "users file {} already exists: manage operators on the console's admin page, or delete \
             the file to start over",
            path.display()
        ),
        _ => anyhow::Error::new(e).context(format!("creating users file {}", path.display())),
    })?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn the_first_admin_logs_in_with_the_password_and_an_existing_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console/users.toml");
        create(&path, "chief \"duty\"", "值班长", "a-one-time-password").unwrap_err();
        create(&path, "chief", "值班长", "a-one-time-password").unwrap();
        let users = Users::load(&path).unwrap();
        let u = users.verify("chief", "a-one-time-password").expect("the password is the admin's");
        assert_eq!((u.role, u.display_name.as_str()), (Role::Admin, "值班长"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let before = std::fs::read_to_string(&path).unwrap();
        let err = create(&path, "other", "", "another-password").unwrap_err().to_string();
        assert!(err.contains("already exists") && err.contains("users.toml"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "left as it was");
    }
}
