//! JWT sign-in: a token signed by an identity provider names the user, so ids are not claimed.
//!
//! The user id is the token's `sub` when that is a UUID, otherwise the UUIDv5 of `<iss>#<sub>` in
//! the URL namespace (`iss` empty when the token has none), so the same person keeps one id.

use std::path::Path;

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use uuid::Uuid;

use super::MAX_DISPLAY_NAME_CHARS;
use crate::{
    config::Config,
    db::ids::UserId,
    error::{Error, Result},
};

/// Clock difference allowed between the identity provider and this server for `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// Checks sign-in tokens against the configured secret or public key.
pub struct JwtVerifier {
    /// The secret or public key signatures are checked with.
    key: DecodingKey,
    /// The one algorithm tokens must be signed with.
    algorithm: Algorithm,
    /// What the library checks: the algorithm, required claims, issuer, audience, leeway.
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

/// The claims FastChat reads; `exp`, `nbf`, `iss` and `aud` are checked by the library.
#[derive(Deserialize)]
struct Claims {
    /// Who the token is for; required (an absent one is reported by the library's claim check).
    #[serde(default)]
    sub: Option<String>,
    /// Who issued it; part of the derived user id when `sub` is not a UUID.
    #[serde(default)]
    iss: Option<String>,
    /// The display name the identity provider knows the user by.
    #[serde(default)]
    name: Option<String>,
}

/// The user a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUser {
    /// From `sub` (and `iss`).
    pub id: UserId,
    /// From `name`, made a valid display name; None when the token has none.
    pub display_name: Option<String>,
}

impl JwtVerifier {
    /// The verifier the config asks for, or None when JWT sign-in is off. Fails on an unreadable
    /// key file, a key of an unsupported type, or an algorithm that does not fit the key.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let (key, default_algorithm) = match (&config.jwt_secret, &config.jwt_public_key) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => bail!("--jwt-secret and --jwt-public-key exclude each other"),
            (Some(secret), None) => (
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ),
            (None, Some(path)) => public_key(path)?,
        };
        let algorithm = config.jwt_algorithm.unwrap_or(default_algorithm);
        if algorithm.family() != key.family() {
            let key = if config.jwt_secret.is_some() {
                "--jwt-secret (an HMAC secret)"
            } else {
                "the key in --jwt-public-key"
            };
            bail!("--jwt-algorithm {algorithm:?} does not fit {key}");
        }

        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &config.jwt_audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience the library would refuse every token that has one.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Some(Self {
            key,
            algorithm,
            validation,
        }))
    }

    /// The user `token` names, or UNAUTHENTICATED saying what is wrong with it.
    pub fn verify(&self, token: &str) -> Result<SignedUser> {
        let refuse = |kind: &ErrorKind| Error::Unauthenticated(rejection(kind, self.algorithm));
        // Checked first so that a header the library cannot read (an unknown `alg` such as
        // `none`) is told apart from malformed claims.
        jsonwebtoken::decode_header(token).map_err(|err| match err.kind() {
            ErrorKind::Json(_) | ErrorKind::InvalidAlgorithmName => {
                Error::Unauthenticated(unreadable_header(self.algorithm))
            }
            other => refuse(other),
        })?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|err| refuse(err.kind()))?
            .claims;
        let sub = claims
            .sub
            .ok_or_else(|| refuse(&ErrorKind::MissingRequiredClaim("sub".into())))?;
        let id = match Uuid::try_parse(&sub) {
            Ok(id) => id,
            Err(_) => {
                let issuer = claims.iss.unwrap_or_default();
                Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("{issuer}#{sub}").as_bytes())
            }
        };
        Ok(SignedUser {
            id: UserId(id),
            display_name: claims.name.as_deref().and_then(display_name),
        })
    }
}

/// Loads a PEM public key, RSA or EC, with the algorithm it implies.
fn public_key(path: &Path) -> anyhow::Result<(DecodingKey, Algorithm)> {
    let pem = std::fs::read(path)
        .with_context(|| format!("--jwt-public-key {}: cannot read the file", path.display()))?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, Algorithm::ES256));
    }
    bail!(
        "--jwt-public-key {}: not a PEM RSA or EC public key",
        path.display()
    )
}

/// Why a token was refused, in words a client can act on. The token itself is never repeated.
fn rejection(kind: &ErrorKind, algorithm: Algorithm) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired (exp)".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the token's signature is invalid".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's `{claim}` claim is malformed"),
        ErrorKind::InvalidAlgorithm => {
            format!("the token must be signed with {algorithm:?}")
        }
        ErrorKind::Json(_) => "the token's claims are malformed".into(),
        _ => "the token is not a valid JWT".into(),
    }
}

/// Why a token whose header cannot be read is refused (often an `alg` such as `none`).
fn unreadable_header(algorithm: Algorithm) -> String {
    format!(
        "the token's header is malformed or names an unsupported algorithm (it must be \
         {algorithm:?}; `none` is never accepted)"
    )
}

/// A display name from a token's `name`: control characters dropped, trimmed, cut to the longest
/// name allowed. The identity provider vouches for it, so it is adapted rather than refused.
fn display_name(name: &str) -> Option<String> {
    let kept: String = name.chars().filter(|c| !c.is_control()).collect();
    let cut: String = kept.trim().chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_from_tokens_are_cleaned_and_cut() {
        assert_eq!(display_name("  Ann\u{7}ie "), Some("Annie".into()));
        assert_eq!(display_name(&"x".repeat(80)).unwrap().chars().count(), 50);
        assert_eq!(display_name(" \n "), None);
    }
}
