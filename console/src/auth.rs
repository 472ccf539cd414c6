//! Operators: the users file (argon2id password hashes, roles) and login sessions (login
//! throttling is in `throttle.rs`).

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
        let text = std::fs::read_to_string(path).with_context(|| match path.exists() {
            true => format!("reading users file {}", path.display()),
            false => format!(
                "reading users file {}; create it with `riskwatch console init-users --users {0}`",
                path.display()
            ),
        })?;
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

    /// The user, if the password is theirs. An unknown name costs the same work (a
    /// verification against a fixed dummy hash) and gives the same answer as a wrong password.
    pub fn verify(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.0.get(name);
        let phc: &str = match user {
            Some(u) => &u.password_hash,
            None => dummy_hash(),
        };
        let hash = PasswordHash::new(phc).ok()?;
        let ok = Argon2::default().verify_password(password.as_bytes(), &hash).is_ok();
        user.filter(|_| ok)
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

/// The hash unknown names are checked against: made once per process from a random password
/// with the default parameters (those of `riskwatch hash-password`), so nothing matches it.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
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
    #[serde(skip)]
    started: Option<Instant>,
}

/// Idle time after which a session ends.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Default absolute lifetime of a session (`--session-lifetime`).
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// What became of a session token.
#[derive(Debug)]
pub enum Lookup {
    /// Valid: the session (now marked used).
    Valid(Session),
    /// Ended now for reaching its absolute lifetime or idle time: who it was.
    Expired(Session),
    /// Not a session (never was, logged out, or expired earlier).
    Unknown,
}

/// Sessions by token.
pub struct Sessions {
    by_token: HashMap<String, Session>,
    /// Absolute lifetime: a session ends this long after login, used or not.
    lifetime: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(LIFETIME)
    }
}

impl Sessions {
    /// No sessions; each will last at most `lifetime`.
    pub fn new(lifetime: Duration) -> Self {
        Sessions { by_token: HashMap::new(), lifetime }
    }

    /// How long a session lasts at most.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Starts a session; returns its token.
    pub fn open(&mut self, u: &User) -> String {
        let token = random_token();
        let display_name = if u.display_name.is_empty() { u.name.clone() } else { u.display_name.clone() };
        let now = Some(Instant::now());
        self.by_token.insert(
            token.clone(),
            Session { name: u.name.clone(), display_name, role: u.role, last_seen: now, started: now },
        );
        token
    }

    /// The session of a token, if still valid (and marks it used).
    pub fn get(&mut self, token: &str) -> Option<Session> {
        match self.lookup(token) {
            Lookup::Valid(s) => Some(s),
            _ => None,
        }
    }

    /// The session of a token, or whether it just expired (and marks a valid one used).
    pub fn lookup(&mut self, token: &str) -> Lookup {
        let lifetime = self.lifetime;
        let alive = |s: &Session| {
            s.last_seen.is_some_and(|t| t.elapsed() < IDLE) && s.started.is_some_and(|t| t.elapsed() < lifetime)
        };
        if let Some(s) = self.by_token.get(token).filter(|s| !alive(s)).cloned() {
            self.by_token.remove(token);
            return Lookup::Expired(s);
        }
        self.by_token.retain(|_, s| alive(s));
        let Some(s) = self.by_token.get_mut(token) else { return Lookup::Unknown };
        s.last_seen = Some(Instant::now());
        Lookup::Valid(s.clone())
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
    fn an_unknown_name_costs_a_full_password_check() {
        let h = hash_password("s3cret").unwrap();
        let users =
            Users::parse(&format!("[[user]]\nname = \"li\"\nrole = \"officer\"\npassword_hash = \"{h}\"\n")).unwrap();
        // The fastest of a few runs of each: robust against a busy machine slowing some down.
        let fastest = |name: &str| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    assert!(users.verify(name, "wrong").is_none());
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let _ = fastest("nobody"); // the dummy hash is made on first use
        let (known, unknown) = (fastest("li"), fastest("nobody"));
        assert!(unknown * 2 >= known && known * 2 >= unknown, "known {known:?}, unknown {unknown:?}");
    }

    #[test]
    fn a_session_ends_at_its_absolute_lifetime_even_while_used() {
        let h = hash_password("s3cret").unwrap();
        let users =
            Users::parse(&format!("[[user]]\nname = \"li\"\nrole = \"officer\"\npassword_hash = \"{h}\"\n")).unwrap();
        let mut s = Sessions::new(Duration::from_millis(300));
        let t = s.open(users.get("li").unwrap());
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(250) {
            assert!(s.get(&t).is_some(), "ended early, at {:?}", start.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match s.lookup(&t) {
                Lookup::Valid(_) => assert!(Instant::now() < deadline, "never ended"),
                Lookup::Expired(e) => break assert_eq!(e.name, "li"),
                Lookup::Unknown => panic!("ended without saying so"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(matches!(s.lookup(&t), Lookup::Unknown));
    }
}
