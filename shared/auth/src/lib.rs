//! Who may do what in an interview: signed tokens and hashed passwords, shared by the session-API
//! (which issues tokens and checks passwords) and the realtime hub (which checks tokens at
//! `join_session`).
//!
//! - **Tokens** are HS256 JWTs signed with `SECRET_KEY` ([`TokenKey`]). A *link* token
//!   ([`TokenKey::link_token`]) is what the interviewer link carries in its URL fragment: role
//!   interviewer, no user id, 30 days. A *participant* token ([`TokenKey::participant_token`]) is
//!   what `POST /api/session/<code>/join` hands out: a role, a fresh user id bound to it and the
//!   participant's colour, 24 hours. [`TokenKey::verify`] accepts a token only for the interview it
//!   was issued for, and says why it refuses one ([`TokenError`]).
//! - **Passwords** ([`hash_password`], [`verify_password`]) are Argon2id PHC strings: the salt and
//!   parameters travel with the hash, so they can be raised later without breaking stored ones.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use duet_domain::Role;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// How long an interviewer link works: long enough to prepare an interview weeks ahead and come
/// back to its review afterwards, short enough that a leaked old link eventually stops working.
pub const LINK_TOKEN_TTL: time::Duration = time::Duration::days(30);
/// How long a participant token works: one interview day. A participant who comes back later joins
/// again (and gets a fresh user id).
pub const PARTICIPANT_TOKEN_TTL: time::Duration = time::Duration::hours(24);
/// Clock skew tolerated on `exp` between the service that issued a token and the one checking it.
pub const EXPIRY_LEEWAY_SECS: u64 = 30;
/// The shortest `SECRET_KEY` accepted, in bytes: HS256 with a short key can be brute-forced
/// offline from a single token.
pub const MIN_SECRET_LEN: usize = 16;

/// What a token is: an interviewer link, or one participant's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Link,
    Participant,
}

/// A token's claims. `uid` and `color` are present exactly in participant tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The interview (session id) the token is for.
    pub sid: Uuid,
    pub role: Role,
    pub kind: TokenKind,
    /// The participant's user id, bound to this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Uuid>,
    /// The participant's colour (`#rrggbb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
}

impl Claims {
    /// Whether the claims hang together: a link token is an interviewer's and names nobody; a
    /// participant token names its user and colour.
    fn consistent(&self) -> bool {
        match self.kind {
            TokenKind::Link => {
                self.role == Role::Interviewer && self.uid.is_none() && self.color.is_none()
            }
            TokenKind::Participant => self.uid.is_some() && self.color.is_some(),
        }
    }
}

/// Why a token was refused. Every kind maps to the same answer for the client (401
/// `unauthorized`); the kinds are for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of ours at all: not a JWT, claims missing or of the wrong shape.
    #[error("the token is malformed")]
    Malformed,
    /// A JWT whose signature does not match (forged, another deployment's key, another algorithm).
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    /// A genuine token, for another interview.
    #[error("the token is for another interview")]
    WrongSession,
}

/// Why a secret cannot sign tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("SECRET_KEY must be at least {MIN_SECRET_LEN} bytes long (got {0})")]
    TooShort(usize),
    #[error(
        "SECRET_KEY is not set: it signs interview tokens, and every service of a deployment needs \
         the same one (e.g. SECRET_KEY=$(openssl rand -hex 32))"
    )]
    Missing,
}

/// The key tokens are signed and checked with (`SECRET_KEY`'s bytes). Cheap to clone.
#[derive(Clone)]
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<secret>)")
    }
}

impl TokenKey {
    /// A key from the secret's bytes. [`KeyError::TooShort`] below [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort(secret.len()));
        }
        // HS256 only: a token claiming any other algorithm (`none`, RS256 with the secret as a
        // "public key") is refused before its signature is even looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = EXPIRY_LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// The key a scaled service signs and checks tokens with: `SECRET_KEY` (`secret`) must be set
    /// ([`KeyError::Missing`] when it is not, or is empty) and long enough.
    pub fn required(secret: Option<&str>) -> Result<Self, KeyError> {
        match secret {
            Some(s) if !s.is_empty() => Self::new(s),
            _ => Err(KeyError::Missing),
        }
    }

    /// A fresh random secret of 32 bytes, for `duet` when `SECRET_KEY` is unset (it keeps it in its
    /// data directory).
    pub fn generate_secret() -> [u8; 32] {
        use rand::RngCore;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        secret
    }

    /// Signs arbitrary claims. The issuing helpers below are what services use; this is public so
    /// tests can make tokens that are expired or otherwise odd, with the real key.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            // HS256 over a serialisable struct cannot fail: a failure here is a bug.
            .expect("HS256 signing of plain claims")
    }

    fn issue(
        &self,
        sid: Uuid,
        role: Role,
        kind: TokenKind,
        uid: Option<Uuid>,
        color: Option<String>,
        ttl: time::Duration,
    ) -> String {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.sign(&Claims {
            sid,
            role,
            kind,
            uid,
            color,
            iat: now,
            exp: now + ttl.whole_seconds(),
        })
    }

    /// The interviewer link's token for interview `sid` ([`LINK_TOKEN_TTL`]).
    pub fn link_token(&self, sid: Uuid) -> String {
        self.issue(
            sid,
            Role::Interviewer,
            TokenKind::Link,
            None,
            None,
            LINK_TOKEN_TTL,
        )
    }

    /// A participant's token: its role, user id and colour in interview `sid`
    /// ([`PARTICIPANT_TOKEN_TTL`]).
    pub fn participant_token(&self, sid: Uuid, role: Role, uid: Uuid, color: &str) -> String {
        self.issue(
            sid,
            role,
            TokenKind::Participant,
            Some(uid),
            Some(color.to_owned()),
            PARTICIPANT_TOKEN_TTL,
        )
    }

    /// Checks a token's signature, expiry and shape, and that it is for interview `expected_sid`.
    pub fn verify(&self, token: &str, expected_sid: Uuid) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Malformed,
        })?;
        let claims = data.claims;
        if !claims.consistent() {
            return Err(TokenError::Malformed);
        }
        if claims.sid != expected_sid {
            return Err(TokenError::WrongSession);
        }
        Ok(claims)
    }
}

/// Hashes an interview password with Argon2id (the crate's default parameters) and a fresh random
/// salt, as a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        // Hashing with the default parameters and a generated salt cannot fail: a failure is a bug.
        .expect("Argon2 hashing with default parameters")
        .to_string()
}

/// Whether `password` matches a PHC string made by [`hash_password`]. A hash that does not parse
/// matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a test secret of enough length";

    fn key() -> TokenKey {
        TokenKey::new(SECRET).unwrap()
    }

    #[test]
    fn link_and_participant_tokens_verify_for_their_interview() {
        let key = key();
        let sid = Uuid::new_v4();
        let link = key.verify(&key.link_token(sid), sid).unwrap();
        assert_eq!(
            (link.sid, link.role, link.kind, link.uid, link.color),
            (sid, Role::Interviewer, TokenKind::Link, None, None)
        );
        assert_eq!(link.exp - link.iat, LINK_TOKEN_TTL.whole_seconds());

        let uid = Uuid::new_v4();
        let token = key.participant_token(sid, Role::Candidate, uid, "#e6194b");
        let claims = key.verify(&token, sid).unwrap();
        assert_eq!(claims.role, Role::Candidate);
        assert_eq!(claims.kind, TokenKind::Participant);
        assert_eq!(claims.uid, Some(uid));
        assert_eq!(claims.color.as_deref(), Some("#e6194b"));
        assert_eq!(
            claims.exp - claims.iat,
            PARTICIPANT_TOKEN_TTL.whole_seconds()
        );
        // The wire form is the contract's.
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["role"], "candidate");
        assert_eq!(json["kind"], "participant");
        assert_eq!(json["sid"], sid.to_string());
    }

    #[test]
    fn tokens_for_another_interview_are_refused() {
        let key = key();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            key.verify(&key.link_token(a), b),
            Err(TokenError::WrongSession)
        );
        let t = key.participant_token(a, Role::Interviewer, Uuid::new_v4(), "#3cb44b");
        assert_eq!(key.verify(&t, b), Err(TokenError::WrongSession));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let sid = Uuid::new_v4();
        // Signed with another deployment's key.
        let other = TokenKey::new("another secret, also long enough").unwrap();
        assert_eq!(
            key().verify(&other.link_token(sid), sid),
            Err(TokenError::BadSignature)
        );
        // A candidate's token whose payload was edited to say interviewer.
        let key = key();
        let t = key.participant_token(sid, Role::Candidate, Uuid::new_v4(), "#3cb44b");
        let parts: Vec<&str> = t.split('.').collect();
        let payload = String::from_utf8(b64(parts[1])).unwrap();
        let edited = payload.replace("candidate", "interviewer");
        let forged = format!("{}.{}.{}", parts[0], b64e(edited.as_bytes()), parts[2]);
        assert_eq!(key.verify(&forged, sid), Err(TokenError::BadSignature));
        // `alg: none`, and another algorithm with the secret as its key.
        let none = format!("{}.{}.", b64e(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert!(key.verify(&none, sid).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &key.verify(&t, sid).unwrap(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(key.verify(&hs512, sid), Err(TokenError::BadSignature));
    }

    #[test]
    fn expired_tokens_are_refused_and_the_leeway_is_small() {
        let key = key();
        let sid = Uuid::new_v4();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = |exp: i64| Claims {
            sid,
            role: Role::Interviewer,
            kind: TokenKind::Link,
            uid: None,
            color: None,
            iat: now - 7200,
            exp,
        };
        assert_eq!(
            key.verify(&key.sign(&claims(now - 3600)), sid),
            Err(TokenError::Expired)
        );
        assert_eq!(
            key.verify(&key.sign(&claims(now - 2 * EXPIRY_LEEWAY_SECS as i64)), sid),
            Err(TokenError::Expired)
        );
        assert!(key.verify(&key.sign(&claims(now + 60)), sid).is_ok());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let key = key();
        let sid = Uuid::new_v4();
        for bad in ["", "not a token", "a.b", "a.b.c", "...."] {
            assert_eq!(key.verify(bad, sid), Err(TokenError::Malformed), "{bad:?}");
        }
        // The signature is checked before the payload is read: garbage under a made-up
        // signature is a bad signature.
        assert_eq!(
            key.verify("eyJhbGciOiJIUzI1NiJ9.%%%.abc", sid),
            Err(TokenError::BadSignature)
        );
        // Genuinely signed but inconsistent claims: a link token naming a user, a candidate link.
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let base = Claims {
            sid,
            role: Role::Interviewer,
            kind: TokenKind::Link,
            uid: Some(Uuid::new_v4()),
            color: None,
            iat: now,
            exp: now + 60,
        };
        assert_eq!(
            key.verify(&key.sign(&base), sid),
            Err(TokenError::Malformed)
        );
        let candidate_link = Claims {
            uid: None,
            role: Role::Candidate,
            ..base.clone()
        };
        assert_eq!(
            key.verify(&key.sign(&candidate_link), sid),
            Err(TokenError::Malformed)
        );
        let participant_without_uid = Claims {
            uid: None,
            kind: TokenKind::Participant,
            color: Some("#000000".into()),
            ..base
        };
        assert_eq!(
            key.verify(&key.sign(&participant_without_uid), sid),
            Err(TokenError::Malformed)
        );
        // Claims of the wrong shape, signed with the right key.
        let odd = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sid": sid, "role": "admin", "kind": "link", "iat": now, "exp": now + 60}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(key.verify(&odd, sid), Err(TokenError::Malformed));
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sid": sid, "role": "interviewer", "kind": "link", "iat": now}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(key.verify(&no_exp, sid), Err(TokenError::Malformed));
    }

    #[test]
    fn short_secrets_are_refused_and_generated_ones_differ() {
        assert_eq!(TokenKey::new("short").unwrap_err(), KeyError::TooShort(5));
        assert!(TokenKey::new([7u8; MIN_SECRET_LEN]).is_ok());
        let (a, b) = (TokenKey::generate_secret(), TokenKey::generate_secret());
        assert_ne!(a, b);
        assert!(!format!("{:?}", key()).contains(SECRET));
        // What a scaled service asks for: SECRET_KEY set, non-empty, long enough; the message
        // names the variable.
        assert_eq!(TokenKey::required(None).unwrap_err(), KeyError::Missing);
        assert_eq!(TokenKey::required(Some("")).unwrap_err(), KeyError::Missing);
        assert_eq!(
            TokenKey::required(Some("short")).unwrap_err(),
            KeyError::TooShort(5)
        );
        assert!(KeyError::Missing.to_string().contains("SECRET_KEY"));
        let required = TokenKey::required(Some(SECRET)).unwrap();
        let sid = Uuid::new_v4();
        assert!(key().verify(&required.link_token(sid), sid).is_ok());
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse ✓");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse ✓", &hash));
        assert!(!verify_password("correct horse", &hash));
        assert!(!verify_password("", &hash));
        // Salted: the same password hashes differently each time, and both verify.
        let again = hash_password("correct horse ✓");
        assert_ne!(hash, again);
        assert!(verify_password("correct horse ✓", &again));
        // A stored value that is not a PHC string matches nothing.
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("", ""));
    }

    fn b64(s: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    }

    fn b64e(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
