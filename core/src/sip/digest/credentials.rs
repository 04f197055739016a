//! [`Credentials`] (a username and password, optionally for one realm) and the
//! [`CredentialStore`] a client picks them from.

/// A username and password, optionally bound to one realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username (the `username` parameter).
    pub username: String,
    /// Password (never sent).
    pub password: String,
    /// The realm these credentials are for; `None` answers any realm.
    pub realm: Option<String>,
}

impl Credentials {
    /// Credentials for any realm.
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            realm: None,
        }
    }

    /// Restricts the credentials to `realm`.
    pub fn for_realm(mut self, realm: &str) -> Credentials {
        self.realm = Some(realm.into());
        self
    }
}

/// The credentials a UA knows, answering per realm.
///
/// ```
/// use siprtmp_core::sip::{CredentialStore, Credentials};
/// let mut store = CredentialStore::new();
/// store.add(Credentials::new("alice", "any"));
/// store.add(Credentials::new("alice-proxy", "secret").for_realm("proxy.example.com"));
/// assert_eq!(store.lookup("proxy.example.com").unwrap().username, "alice-proxy");
/// assert_eq!(store.lookup("elsewhere").unwrap().username, "alice");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialStore {
    entries: Vec<Credentials>,
}

impl CredentialStore {
    /// An empty store.
    pub fn new() -> CredentialStore {
        CredentialStore::default()
    }

    /// Adds credentials; an entry for the same realm (or the same wildcard) is replaced.
    pub fn add(&mut self, creds: Credentials) {
        self.entries.retain(|c| c.realm != creds.realm);
        self.entries.push(creds);
    }

    /// The credentials for `realm`: an exact realm match first, else the wildcard entry.
    pub fn lookup(&self, realm: &str) -> Option<&Credentials> {
        self.entries
            .iter()
            .find(|c| c.realm.as_deref() == Some(realm))
            .or_else(|| self.entries.iter().find(|c| c.realm.is_none()))
    }
}
