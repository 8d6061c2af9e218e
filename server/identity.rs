//! Identity without accounts: the first session or heartbeat for a user id claims it and gets a
//! random token; every later use of that id must present it. Only the token's hash is stored.
//!
//! With JWT sign-in configured ([`jwt`]), tokens are JWTs from an identity provider instead: the
//! token names the user, nothing is claimed, and FastChat mints no tokens. This type is the one
//! place that knows which mode is on; the services call it the same way in both.
//!
//! Claimed users who are never used are deleted after a while ([`prune_unused_users`]).

mod claims;
pub mod jwt;
mod prune;

pub use prune::prune_unused_users;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    cluster::Cluster,
    db::{Database, NewUser, ids::UserId},
    error::{Error, Result},
};
use claims::ClaimWriter;
use jwt::JwtVerifier;

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 50;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// The user's id.
    pub id: UserId,
    /// The user's current display name.
    pub display_name: String,
}

/// Who a Hello or heartbeat claims to be, with its fields already validated.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// The requested id; None lets the server pick one.
    pub user_id: Option<UserId>,
    /// A display name to claim with or rename to.
    pub display_name: Option<String>,
    /// The token presented, if any (from the message or `authorization` metadata).
    pub token: Option<String>,
}

/// Who a Hello or heartbeat is, found without writing anything. The caller checks its limits,
/// then [`Identity::admit`]s it: a refused call neither claims an id nor renames a user.
#[derive(Debug)]
#[must_use = "nothing is claimed or renamed until the call is admitted"]
pub struct Resolved {
    /// The user as the call leaves them: a new user, or a known one with the requested name.
    user: AuthUser,
    /// What admitting the call writes.
    write: Write,
}

/// What admitting a resolved call writes.
#[derive(Debug)]
enum Write {
    /// Nothing: a known user, under their stored name.
    Nothing,
    /// A claimed user's new display name; `token_hash` keys them in the cache.
    Rename { token_hash: String },
    /// A new user id, claimed with this fresh token.
    Claim { token: String },
    /// A JWT user's new display name.
    RenameSignedIn,
    /// A JWT user seen for the first time; `named` when the token or the call gave the name.
    FirstSignIn { named: bool },
}

impl Resolved {
    /// The user the call is for.
    pub fn user_id(&self) -> UserId {
        self.user.id
    }

    /// Whether admitting the call claims a new user id, which the limit on claims per client
    /// address counts. A JWT user's first sign-in is not a claim: their identity provider vouches
    /// for them.
    pub fn is_claim(&self) -> bool {
        matches!(self.write, Write::Claim { .. })
    }
}

/// Claims and checks user ids.
#[derive(Debug)]
pub struct Identity {
    /// Where users and token hashes live.
    db: Database,
    /// Inserts claimed users in batches.
    claims: ClaimWriter,
    /// What is known not to change, so calls do not each cost a query.
    cache: Mutex<Cache>,
    /// Set when sign-in is by JWT: then tokens are checked by it and ids are never claimed.
    jwt: Option<JwtVerifier>,
    /// In cluster mode, told of every rename, so the other nodes' caches follow.
    cluster: Option<Arc<Cluster>>,
}

/// Facts that do not go stale: a token belongs to one user for good, and a user stays until the
/// prune deletes them, which removes them here. A rename updates `by_token`.
#[derive(Debug, Default)]
struct Cache {
    /// Token hash to user.
    by_token: HashMap<String, AuthUser>,
    /// Ids known to exist.
    known: HashSet<UserId>,
    /// Users signed in by JWT on this server, with their display name as stored.
    signed_in: HashMap<UserId, String>,
}

impl Cache {
    fn remember(&mut self, token_hash: String, user: AuthUser) {
        self.known.insert(user.id);
        self.by_token.insert(token_hash, user);
    }

    fn remember_signed_in(&mut self, id: UserId, display_name: &str) {
        self.known.insert(id);
        self.signed_in.insert(id, display_name.to_owned());
    }

    /// Another node renamed `id`. Renames are rare, so a pass over the tokens is fine.
    fn renamed(&mut self, id: UserId, display_name: &str) {
        for user in self.by_token.values_mut().filter(|user| user.id == id) {
            display_name.clone_into(&mut user.display_name);
        }
        if let Some(name) = self.signed_in.get_mut(&id) {
            display_name.clone_into(name);
        }
    }
}

impl Identity {
    /// Whether users sign in with JWTs from an identity provider instead of claiming ids.
    pub fn uses_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// Identity over `db`; `jwt` turns JWT sign-in on; `cluster` (cluster mode) hears of this
    /// node's renames. Starts the claim writer on the current runtime.
    pub fn new(db: Database, jwt: Option<JwtVerifier>, cluster: Option<Arc<Cluster>>) -> Self {
        Self {
            claims: ClaimWriter::start(db.clone()),
            db,
            cache: Mutex::new(Cache::default()),
            jwt,
            cluster,
        }
    }

    /// Another node renamed `id`: calls here see the new name too.
    pub fn renamed_elsewhere(&self, id: UserId, display_name: &str) {
        self.cache().renamed(id, display_name);
    }

    /// After a rename is stored: the other nodes' caches follow.
    fn share_rename(&self, user: &AuthUser) {
        if let Some(cluster) = &self.cluster {
            cluster.share_rename(user.id, &user.display_name);
        }
    }

    /// Resolves a Hello or heartbeat, writing nothing: with a token, checks it (noting a new name
    /// when one is given); without one, prepares a claim of the id. `field` prefixes the names of
    /// fields in errors (for example `hello.`).
    ///
    /// With JWT sign-in the token is required and names the user; a user id, when given, must be
    /// that user. The display name is the token's `name`, else the claim's, else the stored one.
    pub async fn resolve(&self, claim: Claim, field: &str) -> Result<Resolved> {
        if let Some(jwt) = &self.jwt {
            let token = claim.token.ok_or_else(|| {
                Error::Unauthenticated(format!(
                    "sign-in is by JWT: present one as {}`authorization: Bearer <JWT>` metadata",
                    // A heartbeat (no field prefix) has no token field.
                    if field.is_empty() {
                        String::new()
                    } else {
                        format!("{field}token or ")
                    }
                ))
            })?;
            let signed = jwt.verify(&token)?;
            if claim.user_id.is_some_and(|id| id != signed.id) {
                return Err(Error::Unauthenticated(format!(
                    "{field}user_id is not the token's user ({})",
                    signed.id
                )));
            }
            return self
                .resolve_signed_in(signed.id, signed.display_name.or(claim.display_name))
                .await;
        }

        if let Some(token) = claim.token {
            let user = self.authenticate(&token).await?;
            if claim.user_id.is_some_and(|id| id != user.id) {
                return Err(Error::Unauthenticated(
                    "the token belongs to another user".into(),
                ));
            }
            return Ok(
                match claim.display_name.filter(|name| *name != user.display_name) {
                    Some(display_name) => Resolved {
                        user: AuthUser {
                            display_name,
                            ..user
                        },
                        write: Write::Rename {
                            token_hash: hash_token(&token),
                        },
                    },
                    None => Resolved {
                        user,
                        write: Write::Nothing,
                    },
                },
            );
        }

        let id = claim.user_id.unwrap_or_else(UserId::new_random);
        let Some(display_name) = claim.display_name else {
            if self.db.find_user(id).await?.is_some() {
                return Err(already_claimed());
            }
            return Err(Error::invalid(
                format!("{field}display_name"),
                "required to claim a new user id",
            ));
        };
        Ok(Resolved {
            user: AuthUser { id, display_name },
            write: Write::Claim { token: new_token() },
        })
    }

    /// Writes what a resolved call asks (a claim, a rename, a JWT user's first sign-in). Returns
    /// the user and, for a claim, the new token.
    pub async fn admit(&self, resolved: Resolved) -> Result<(AuthUser, Option<String>)> {
        let Resolved { mut user, write } = resolved;
        match write {
            Write::Nothing => {}
            Write::Rename { token_hash } => {
                self.db.rename_user(user.id, &user.display_name).await?;
                self.share_rename(&user);
                self.cache().remember(token_hash, user.clone());
            }
            Write::Claim { token } => {
                let token_hash = hash_token(&token);
                let claimed = self.claims.claim(NewUser {
                    id: user.id,
                    display_name: user.display_name.clone(),
                    token_hash: token_hash.clone(),
                });
                if !claimed.await? {
                    return Err(already_claimed());
                }
                self.cache().remember(token_hash, user.clone());
                return Ok((user, Some(token)));
            }
            Write::RenameSignedIn => {
                self.db.rename_user(user.id, &user.display_name).await?;
                self.share_rename(&user);
                self.cache().remember_signed_in(user.id, &user.display_name);
            }
            Write::FirstSignIn { named } => {
                let claimed = self.claims.claim(NewUser {
                    id: user.id,
                    display_name: user.display_name.clone(),
                    token_hash: jwt_token_hash(user.id),
                });
                // Not created: another session of the user created the row meanwhile.
                if !claimed.await? {
                    if named {
                        self.db.rename_user(user.id, &user.display_name).await?;
                        self.share_rename(&user);
                    } else if let Some(row) = self.db.find_user(user.id).await? {
                        user.display_name = row.display_name;
                    }
                }
                self.cache().remember_signed_in(user.id, &user.display_name);
            }
        }
        Ok((user, None))
    }

    /// The user a bearer token belongs to. With JWT sign-in, a user seen for the first time is
    /// created, and one whose token carries a new name is renamed.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser> {
        if let Some(jwt) = &self.jwt {
            let signed = jwt.verify(token)?;
            let resolved = self
                .resolve_signed_in(signed.id, signed.display_name)
                .await?;
            return Ok(self.admit(resolved).await?.0);
        }
        let hash = hash_token(token);
        let cached = self.cache().by_token.get(&hash).cloned();
        if let Some(user) = cached {
            return Ok(user);
        }
        let Some(row) = self.db.user_by_token_hash(&hash).await? else {
            return Err(Error::Unauthenticated("unknown token".into()));
        };
        let user = AuthUser {
            id: row.id,
            display_name: row.display_name,
        };
        self.cache().remember(hash, user.clone());
        Ok(user)
    }

    /// Whether a user with this id exists.
    pub async fn exists(&self, id: UserId) -> Result<bool> {
        if self.cache().known.contains(&id) {
            return Ok(true);
        }
        let exists = self.db.find_user(id).await?.is_some();
        if exists {
            self.cache().known.insert(id);
        }
        Ok(exists)
    }

    /// The user a valid JWT names, as they will be once admitted: created on first sight, renamed
    /// when `display_name` differs from the stored name.
    async fn resolve_signed_in(
        &self,
        id: UserId,
        display_name: Option<String>,
    ) -> Result<Resolved> {
        let cached = self.cache().signed_in.get(&id).cloned();
        let stored = match cached {
            Some(name) => Some(name),
            None => {
                let stored = self.db.find_user(id).await?.map(|row| row.display_name);
                if let Some(name) = &stored {
                    self.cache().remember_signed_in(id, name);
                }
                stored
            }
        };
        let (display_name, write) = match (stored, display_name) {
            (Some(stored), Some(wanted)) if stored != wanted => (wanted, Write::RenameSignedIn),
            (Some(stored), _) => (stored, Write::Nothing),
            (None, wanted) => (
                wanted.clone().unwrap_or_else(|| default_display_name(id)),
                Write::FirstSignIn {
                    named: wanted.is_some(),
                },
            ),
        };
        Ok(Resolved {
            user: AuthUser { id, display_name },
            write,
        })
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn already_claimed() -> Error {
    Error::Unauthenticated("this user id is already claimed; present its token".into())
}

/// A fresh token: 256 random bits, hex-encoded.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The name of a JWT user whose token has no `name` and whose Hello gave none.
fn default_display_name(id: UserId) -> String {
    let short: String = id.0.simple().to_string().chars().take(8).collect();
    format!("user-{short}")
}

/// What `users.token_hash` (unique, required) holds for a JWT user: JWT users have no FastChat
/// token, and no SHA-256 in hex looks like this, so no token ever authenticates as them. Should
/// JWT sign-in be turned off later, their ids stay taken rather than free to claim.
fn jwt_token_hash(id: UserId) -> String {
    format!("{JWT_TOKEN_HASH_PREFIX}{id}")
}

/// How the token hash of every JWT user starts.
const JWT_TOKEN_HASH_PREFIX: &str = "jwt:";

/// What the database keeps of a token.
fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
