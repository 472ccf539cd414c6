//! Operators: the users file (argon2id password hashes, roles), login sessions and lockout.

use anyhow::{bail, Context, Result};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What an operator may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees the board, alert details and history.
    Viewer,
    /// Also acknowledges, assigns and resolves alerts, and reads the audit log.
    Officer,
    /// Also manages the operators (the users file) from the console.
    Admin,
}

impl Role {
    /// As written in the users file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Officer => "officer",
            Role::Admin => "admin",
        }
    }

    /// From the users file's spelling.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Viewer, Role::Officer, Role::Admin].into_iter().find(|r| r.as_str() == s)
    }
}

/// One operator.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name (also the `by` of the commands they send).
    pub name: String,
    /// Name shown in the console.
    #[serde(default)]
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// PHC string from `riskwatch hash-password` (argon2id).
    pub password_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<User>,
}

/// The operators, by name.
pub struct Users(HashMap<String, User>);

impl std::fmt::Debug for User {
    // No password hash: it stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("display_name", &self.display_name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Users {
    // Names only: password hashes stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Users {
    /// Reads a users file; every problem names the user and field.
    pub fn load(path: &Path) -> Result<Users> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading users file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses a users file.
    pub fn parse(text: &str) -> Result<Users> {
        let file: UsersFile = toml::from_str(text)?;
        let mut map = HashMap::new();
        for (i, u) in file.users.into_iter().enumerate() {
            if u.name.trim().is_empty() {
                bail!("user[{i}].name: must not be empty");
            }
            if PasswordHash::new(&u.password_hash).is_err() {
                bail!(
                    "user[{i}] ({}).password_hash: not a PHC hash string; make one with `riskwatch hash-password`",
                    u.name
                );
            }
            let name = u.name.clone();
            if map.insert(name.clone(), u).is_some() {
                bail!("user[{i}].name: {name:?} appears twice");
            }
        }
        if map.is_empty() {
            bail!("no [[user]] defined: nobody could log in");
        }
        Ok(Users(map))
    }

    /// The user, if the password is theirs. Takes about as long for unknown names.
    pub fn verify(&self, name: &str, password: &str) -> Option<&User> {
        match self.0.get(name) {
            Some(u) => {
                let hash = PasswordHash::new(&u.password_hash).ok()?;
                Argon2::default().verify_password(password.as_bytes(), &hash).ok().map(|_| u)
            }
            None => {
                let _ = hash_password(password);
                None
            }
        }
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.0.get(name)
    }

    /// Every user (for the admin's operator list).
    pub fn list(&self) -> Vec<&User> {
        let mut v: Vec<&User> = self.0.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))
}

/// A logged-in operator.
#[derive(Clone, Debug, Serialize)]
pub struct Session {
    /// Login name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    #[serde(skip)]
    last_seen: Option<Instant>,
}

/// Idle time after which a session ends.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Failed logins in a row before a name is locked for [`LOCKOUT`].
const MAX_FAILURES: u32 = 5;
/// How long a name stays locked.
const LOCKOUT: Duration = Duration::from_secs(60);

/// Sessions by token, and failed-login counts by name.
#[derive(Default)]
pub struct Sessions {
    by_token: HashMap<String, Session>,
    failures: HashMap<String, (u32, Instant)>,
}

impl Sessions {
    /// Whether `name` is locked out after repeated failures.
    pub fn locked(&self, name: &str) -> bool {
        matches!(self.failures.get(name), Some((n, at)) if *n >= MAX_FAILURES && at.elapsed() < LOCKOUT)
    }

    /// Records a failed login.
    pub fn failed(&mut self, name: &str) {
        let e = self.failures.entry(name.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= LOCKOUT {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = Instant::now();
    }

    /// Starts a session; returns its token.
    pub fn open(&mut self, u: &User) -> String {
        self.failures.remove(&u.name);
        let token = random_token();
        let display_name = if u.display_name.is_empty() { u.name.clone() } else { u.display_name.clone() };
        self.by_token.insert(
            token.clone(),
            Session { name: u.name.clone(), display_name, role: u.role, last_seen: Some(Instant::now()) },
        );
        token
    }

    /// The session of a token, if still valid (and marks it used).
    pub fn get(&mut self, token: &str) -> Option<Session> {
        self.by_token.retain(|_, s| s.last_seen.is_some_and(|t| t.elapsed() < IDLE));
        let s = self.by_token.get_mut(token)?;
        s.last_seen = Some(Instant::now());
        Some(s.clone())
    }

    /// Ends a session.
    pub fn close(&mut self, token: &str) -> Option<Session> {
        self.by_token.remove(token)
    }

    /// Ends every session of `name` but the one of token `keep`; returns how many ended.
    pub fn end_user(&mut self, name: &str, keep: Option<&str>) -> usize {
        let before = self.by_token.len();
        self.by_token.retain(|token, s| s.name != name || Some(token.as_str()) == keep);
        before - self.by_token.len()
    }

    /// Brings the sessions in line with the users file: those of an operator no longer in it, or
    /// whose role changed, end at once (a session holds the role it logged in with); display
    /// names follow. Returns the names whose sessions ended.
    pub fn sync(&mut self, users: &Users) -> Vec<String> {
        let mut ended = Vec::new();
        self.by_token.retain(|_, s| match users.get(&s.name) {
            Some(u) if u.role == s.role => {
                s.display_name = if u.display_name.is_empty() { u.name.clone() } else { u.display_name.clone() };
                true
            }
            _ => {
                ended.push(s.name.clone());
                false
            }
        });
        ended.sort();
        ended.dedup();
        ended
    }
}

/// 256 random bits, hex.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_problems_name_the_field_and_passwords_verify() {
        let h = hash_password("s3cret").unwrap();
        let users =
            Users::parse(&format!("[[user]]\nname = \"li\"\nrole = \"officer\"\npassword_hash = \"{h}\"\n")).unwrap();
        assert_eq!(users.verify("li", "s3cret").map(|u| u.role), Some(Role::Officer));
        assert!(users.verify("li", "wrong").is_none());
        assert!(users.verify("nobody", "s3cret").is_none());
        let err = Users::parse("[[user]]\nname = \"li\"\nrole = \"officer\"\npassword_hash = \"plain\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("user[0] (li).password_hash"), "{err:#}");
        let err = Users::parse("[[user]]\nname = \"li\"\nrole = \"boss\"\npassword_hash = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("role"), "{err:#}");
    }

    #[test]
    fn the_shipped_example_users_file_parses_and_opens_for_nobody() {
        let users = Users::parse(include_str!("../../deploy/console/users.example.toml")).unwrap();
        assert_eq!(users.list().len(), 2);
        for pw in ["", "password", "admin", "duty-1"] {
            assert!(users.verify("admin", pw).is_none() && users.verify("duty-1", pw).is_none());
        }
    }

    #[test]
    fn a_changed_role_or_a_removed_operator_ends_their_sessions() {
        let h = hash_password("s3cret").unwrap();
        let file = |li_role: &str, wang: bool| {
            let mut t = format!("[[user]]\nname = \"li\"\nrole = \"{li_role}\"\npassword_hash = \"{h}\"\n");
            if wang {
                t.push_str(&format!("[[user]]\nname = \"wang\"\nrole = \"viewer\"\npassword_hash = \"{h}\"\n"));
            }
            Users::parse(&t).unwrap()
        };
        let users = file("officer", true);
        let mut s = Sessions::default();
        let li = s.open(users.get("li").unwrap());
        let wang = s.open(users.get("wang").unwrap());
        assert!(s.sync(&users).is_empty());
        assert_eq!(s.sync(&file("viewer", true)), ["li"]);
        assert!(s.get(&li).is_none() && s.get(&wang).is_some());
        assert_eq!(s.sync(&file("viewer", false)), ["wang"]);
        assert!(s.get(&wang).is_none());
        let a = s.open(users.get("li").unwrap());
        let b = s.open(users.get("li").unwrap());
        assert_eq!(s.end_user("li", Some(&a)), 1);
        assert!(s.get(&a).is_some() && s.get(&b).is_none());
        assert!(!format!("{:?}", users.get("li").unwrap()).contains("argon2"));
    }

    #[test]
    fn repeated_failures_lock_the_name() {
        let mut s = Sessions::default();
        for _ in 0..MAX_FAILURES {
            assert!(!s.locked("li"));
            s.failed("li");
        }
        assert!(s.locked("li"));
        assert!(!s.locked("wang"));
    }
}
