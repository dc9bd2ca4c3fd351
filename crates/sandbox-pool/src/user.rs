//! Users: the id that names a user's container, checked once ([`UserId`]), and where each
//! user's root lives on the host ([`UserRoots`]).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::str::FromStr;

use crate::PoolError;

/// A user id that can name a container (`<prefix>-<user>`) and be a label value: 1 to 64 of
/// `A-Z a-z 0-9 _ . -`, not starting with `.` or `-`. Checked once, when made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// `id`, if it is a valid user id ([`PoolError::InvalidUser`] if not).
    pub fn new(id: impl Into<String>) -> Result<Self, PoolError> {
        let id = id.into();
        let ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !id.starts_with(['.', '-']);
        if ok {
            Ok(Self(id))
        } else {
            Err(PoolError::InvalidUser { user: id })
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for UserId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for UserId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for UserId {
    type Err = PoolError;
    fn from_str(s: &str) -> Result<Self, PoolError> {
        Self::new(s)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

/// What the pool's methods take as a user: a [`UserId`] (already checked), or a string,
/// checked on the way in.
pub trait IntoUserId {
    /// The checked id.
    fn into_user_id(self) -> Result<UserId, PoolError>;
}

impl IntoUserId for UserId {
    fn into_user_id(self) -> Result<UserId, PoolError> {
        Ok(self)
    }
}

impl IntoUserId for &UserId {
    fn into_user_id(self) -> Result<UserId, PoolError> {
        Ok(self.clone())
    }
}

impl IntoUserId for &str {
    fn into_user_id(self) -> Result<UserId, PoolError> {
        UserId::new(self)
    }
}

impl IntoUserId for String {
    fn into_user_id(self) -> Result<UserId, PoolError> {
        UserId::new(self)
    }
}

impl IntoUserId for &String {
    fn into_user_id(self) -> Result<UserId, PoolError> {
        UserId::new(self.as_str())
    }
}

/// Whether `user` is a valid user id ([`UserId::new`] without keeping it).
pub fn validate_user(user: &str) -> Result<(), PoolError> {
    UserId::new(user).map(drop)
}

/// Where each user's root lives on the host. The pool mounts it at `/workspace`.
pub trait UserRoots: Send + Sync {
    /// The host folder of `user` (need not exist yet).
    fn root(&self, user: &str) -> PathBuf;
}

/// A base folder: user `u`'s root is `<base>/u`.
impl UserRoots for PathBuf {
    fn root(&self, user: &str) -> PathBuf {
        self.join(user)
    }
}

/// Any function from user to folder.
impl<F: Fn(&str) -> PathBuf + Send + Sync> UserRoots for F {
    fn root(&self, user: &str) -> PathBuf {
        self(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_must_make_container_names() {
        for ok in [
            "u1",
            "alice.smith",
            "a-b_c",
            "0f8c1b2e-3d4a-4b5c-9d6e-7f8a9b0c1d2e",
        ] {
            assert_eq!(UserId::new(ok).expect(ok).as_str(), ok);
            assert!(validate_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "ü", "x:y", &"a".repeat(65)] {
            let err = UserId::new(bad).expect_err(bad);
            assert!(
                matches!(&err, PoolError::InvalidUser { user } if user == bad),
                "{err:?}"
            );
            assert!(bad.into_user_id().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_checked_id_passes_through_unchanged() {
        let id = UserId::new("alice").expect("valid");
        assert_eq!((&id).into_user_id().expect("checked"), id);
        assert_eq!("alice".parse::<UserId>().expect("parsed"), id);
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"alice\"");
        assert_eq!(String::from(id), "alice");
    }
}
