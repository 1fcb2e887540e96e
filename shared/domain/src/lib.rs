//! Domain types shared by every Duet service.
//!
//! Values are parsed once at the edge (`SessionCode::parse`, `Language::parse`, `Title::parse`) so the
//! inside of the system never re-validates them.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The alphabet session codes are drawn from: no `0/O`, `1/I/L`, `U` (avoids accidental words), so a code
/// read aloud or copied by hand is unambiguous.
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of a session code. 30^8 ≈ 6.6e11 codes: collisions are rare and retried.
pub const CODE_LEN: usize = 8;
/// Longest title a session may have, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest display name a participant may have, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A human-readable session code such as `K7MX2QPA`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionCode(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("session code must be {CODE_LEN} characters from 2-9 and A-Z without I, L, O, U")]
    InvalidCode,
    #[error("unknown language {0:?}; supported: javascript, python, html")]
    UnknownLanguage(String),
    #[error("title is longer than {MAX_TITLE_CHARS} characters")]
    TitleTooLong,
    #[error("title must not contain control characters (line breaks, tabs, U+0000 and the like)")]
    InvalidTitle,
    #[error("name must be 1 to {MAX_NAME_CHARS} characters without control characters")]
    InvalidName,
    /// The text holds U+0000, which a PostgreSQL `text` column cannot store (see [`reject_nul`]).
    #[error("{0} must not contain the character U+0000 (NUL)")]
    NulCharacter(&'static str),
}

/// Refuses a text that holds U+0000 (NUL), naming `field` in the error.
///
/// PostgreSQL's `text` type cannot hold U+0000 at all (the server refuses the whole statement), so
/// free text that is stored as it is (a run's output) is checked with this at the edge, and the
/// storage backends check it again before writing. Both backends refuse it, so a client sees the
/// same answer whichever one runs.
pub fn reject_nul(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.contains('\0') {
        Err(DomainError::NulCharacter(field))
    } else {
        Ok(())
    }
}

impl SessionCode {
    /// Parses a code typed by a person: surrounding blanks are ignored and lower case is accepted.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let code = raw.trim().to_ascii_uppercase();
        if code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
            Ok(Self(code))
        } else {
            Err(DomainError::InvalidCode)
        }
    }

    /// A fresh random code. Uniqueness is the store's job: it rejects a taken code and the caller retries.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let code = (0..CODE_LEN)
            .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
            .collect();
        Self(code)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionCode {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SessionCode> for String {
    fn from(value: SessionCode) -> Self {
        value.0
    }
}

impl fmt::Display for SessionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionCode({})", self.0)
    }
}

/// The languages an interview can be in: the closed list the browser can run or render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Language {
    #[default]
    Javascript,
    Python,
    Html,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::Javascript, Language::Python, Language::Html];

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "javascript" => Ok(Self::Javascript),
            "python" => Ok(Self::Python),
            "html" => Ok(Self::Html),
            _ => Err(DomainError::UnknownLanguage(raw.chars().take(40).collect())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Javascript => "javascript",
            Self::Python => "python",
            Self::Html => "html",
        }
    }
}

impl TryFrom<String> for Language {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session title: optional, at most [`MAX_TITLE_CHARS`] characters, trimmed, one line without
/// control characters (a title is shown in page headers and tab titles; U+0000 cannot even be
/// stored on PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let t = raw.trim();
        if t.chars().count() > MAX_TITLE_CHARS {
            return Err(DomainError::TitleTooLong);
        }
        if t.chars().any(char::is_control) {
            return Err(DomainError::InvalidTitle);
        }
        Ok(Self(t.to_owned()))
    }

    /// A title read back from storage. Not re-validated: it was parsed when it was written, and a
    /// rule added later (such as the one on control characters) must not make an existing
    /// interview unreadable.
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A participant's display name: 1 to [`MAX_NAME_CHARS`] characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let n = raw.trim();
        let len = n.chars().count();
        if len == 0 || len > MAX_NAME_CHARS || n.chars().any(char::is_control) {
            return Err(DomainError::InvalidName);
        }
        Ok(Self(n.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Cursor and avatar colours, distinct on light and dark backgrounds. The n-th participant token of
/// an interview gets colour `n % PALETTE.len()` (a per-interview counter in storage), so the
/// participants of one interview never share a colour while there are fewer than twelve of them.
pub const PALETTE: [&str; 12] = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#fabed4", "#469990", "#9a6324", "#800000",
];

/// The colour of an interview's `n`-th participant token (`n` counts from 0).
pub fn palette_color(n: i64) -> &'static str {
    PALETTE[n.rem_euclid(PALETTE.len() as i64) as usize]
}

/// Where an interview is in its life: a lobby (`Waiting`, candidates wait for the interviewer),
/// `Live` (everyone edits), `Ended` (read-only for everyone, for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InterviewState {
    Waiting,
    #[default]
    Live,
    Ended,
}

impl InterviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Live => "live",
            Self::Ended => "ended",
        }
    }

    /// Parses the stored / wire name (`waiting`, `live`, `ended`; exact, lower case).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "waiting" => Some(Self::Waiting),
            "live" => Some(Self::Live),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }

    /// Whether an interview in this state may be moved to `to`: forward only (waiting → live →
    /// ended, or waiting → ended), and staying where it is is allowed (a repeated start or end is
    /// idempotent). Nothing leaves `Ended`, and nothing goes back to `Waiting`.
    pub fn can_move_to(self, to: Self) -> bool {
        self == to
            || matches!(
                (self, to),
                (Self::Waiting, Self::Live)
                    | (Self::Waiting, Self::Ended)
                    | (Self::Live, Self::Ended)
            )
    }
}

impl fmt::Display for InterviewState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a participant may do in an interview. `Interviewer`: whoever holds the interviewer link
/// (several are fine); `Candidate`: everyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Interviewer,
    Candidate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interviewer => "interviewer",
            Self::Candidate => "candidate",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shared documents of an interview: the candidate's code, and the interviewers' private notes.
/// Stored as a small integer in the history tables (`doc` column: 0 code, 1 notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum DocKind {
    #[default]
    Code,
    Notes,
}

impl DocKind {
    pub const ALL: [DocKind; 2] = [DocKind::Code, DocKind::Notes];

    /// The value of the `doc` column.
    pub fn as_i16(self) -> i16 {
        match self {
            Self::Code => 0,
            Self::Notes => 1,
        }
    }

    pub fn from_i16(raw: i16) -> Option<Self> {
        match raw {
            0 => Some(Self::Code),
            1 => Some(Self::Notes),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::Notes => "notes",
        }
    }
}

impl fmt::Display for DocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An interview session as stored. The password's hash is not part of it (it is never sent
/// anywhere): `has_password` says whether there is one, and the storage hands the hash out only to
/// the code that checks a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: Uuid,
    pub code: SessionCode,
    pub title: Title,
    pub language: Language,
    /// The plain text of the document, kept current by the hub for the REST API.
    pub text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub state: InterviewState,
    /// When it went live: `created_at` for an interview created without a lobby, `None` while it waits.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub has_password: bool,
    /// Candidates' edits are refused while set (interviewers still edit).
    pub editing_locked: bool,
    /// Candidates may run code while set.
    pub runs_enabled: bool,
}

/// An interview's lifecycle and interviewer controls as everyone sees them: the `interview_state`
/// Socket.IO event, the body of the bus's `Control` message (session-API or hub → every hub of the
/// interview), and part of `GET /api/session/<code>`. Always a full snapshot, so the newest one wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterviewControl {
    pub state: InterviewState,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub ended_at: Option<OffsetDateTime>,
    pub editing_locked: bool,
    pub runs_enabled: bool,
    /// Users removed from the interview (on the bus only, when someone was just removed: their
    /// connections are closed and their tokens refused from then on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Uuid>,
}

impl InterviewControl {
    /// The interview's state and controls as stored (no removals).
    pub fn of(session: &Session) -> Self {
        Self {
            state: session.state,
            started_at: session.started_at,
            ended_at: session.ended_at,
            editing_locked: session.editing_locked,
            runs_enabled: session.runs_enabled,
            removed: Vec::new(),
        }
    }
}

/// What a caller supplies to create a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub code: SessionCode,
    pub title: Title,
    pub language: Language,
    /// Start in the lobby (`Waiting`) rather than `Live`.
    pub lobby: bool,
    /// The interview password's Argon2 PHC string (`duet_auth::hash_password`), if it has one.
    pub password_hash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_parse_and_use_only_the_alphabet() {
        for _ in 0..1000 {
            let c = SessionCode::generate();
            assert_eq!(SessionCode::parse(c.as_str()), Ok(c.clone()));
            assert_eq!(c.as_str().len(), CODE_LEN);
        }
    }

    #[test]
    fn codes_are_case_insensitive_and_trimmed() {
        assert_eq!(
            SessionCode::parse(" k7mx2qpa ").unwrap().as_str(),
            "K7MX2QPA"
        );
    }

    #[test]
    fn ambiguous_or_wrong_length_codes_are_rejected() {
        for bad in [
            "",
            "K7MX2QP",
            "K7MX2QPAA",
            "K7MX2QP0",
            "K7MX2QPO",
            "K7MX2QP1",
            "K7MX2QPI",
            "K7MX2QP-",
            "ÄÄÄÄÄÄÄÄ",
        ] {
            assert_eq!(
                SessionCode::parse(bad),
                Err(DomainError::InvalidCode),
                "{bad}"
            );
        }
    }

    #[test]
    fn languages_round_trip_and_unknown_is_rejected() {
        for l in Language::ALL {
            assert_eq!(Language::parse(l.as_str()), Ok(l));
        }
        assert!(matches!(
            Language::parse("cobol"),
            Err(DomainError::UnknownLanguage(_))
        ));
    }

    #[test]
    fn titles_and_names_are_bounded() {
        assert!(Title::parse(&"x".repeat(MAX_TITLE_CHARS)).is_ok());
        assert_eq!(
            Title::parse(&"x".repeat(MAX_TITLE_CHARS + 1)),
            Err(DomainError::TitleTooLong)
        );
        assert_eq!(DisplayName::parse("  "), Err(DomainError::InvalidName));
        assert_eq!(DisplayName::parse("a\u{7}b"), Err(DomainError::InvalidName));
        assert_eq!(DisplayName::parse(" Ada ").unwrap().as_str(), "Ada");
    }

    #[test]
    fn titles_and_names_refuse_nul_and_other_control_characters() {
        for bad in [
            "a\0b",
            "\0",
            "line\nbreak",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}x",
        ] {
            assert_eq!(Title::parse(bad), Err(DomainError::InvalidTitle), "{bad:?}");
            assert_eq!(
                DisplayName::parse(bad),
                Err(DomainError::InvalidName),
                "{bad:?}"
            );
        }
        // Surrounding blanks (including a trailing newline) are trimmed, not refused.
        assert_eq!(Title::parse(" Round 1\n").unwrap().as_str(), "Round 1");
        assert_eq!(Title::parse("Ünïcödé ✓ 𝄞").unwrap().as_str(), "Ünïcödé ✓ 𝄞");
    }

    #[test]
    fn reject_nul_names_the_field() {
        assert_eq!(reject_nul("output", "fine\u{1}\n"), Ok(()));
        assert_eq!(
            reject_nul("output", "a\0"),
            Err(DomainError::NulCharacter("output"))
        );
        assert_eq!(
            DomainError::NulCharacter("output").to_string(),
            "output must not contain the character U+0000 (NUL)"
        );
    }
    #[test]
    fn lifecycle_moves_forward_only_and_repeats_are_allowed() {
        use InterviewState::*;
        for s in [Waiting, Live, Ended] {
            assert!(s.can_move_to(s), "{s} -> {s} is idempotent");
            assert_eq!(InterviewState::parse(s.as_str()), Some(s));
        }
        assert!(Waiting.can_move_to(Live));
        assert!(Waiting.can_move_to(Ended));
        assert!(Live.can_move_to(Ended));
        assert!(!Live.can_move_to(Waiting));
        assert!(!Ended.can_move_to(Live));
        assert!(!Ended.can_move_to(Waiting));
        assert_eq!(InterviewState::parse("LIVE"), None);
        assert_eq!(serde_json::to_value(Waiting).unwrap(), "waiting");
        assert_eq!(
            serde_json::to_value(Role::Interviewer).unwrap(),
            "interviewer"
        );
        assert_eq!(
            serde_json::from_value::<Role>(serde_json::json!("candidate")).unwrap(),
            Role::Candidate
        );
    }

    #[test]
    fn doc_kinds_round_trip_and_the_palette_cycles() {
        for d in DocKind::ALL {
            assert_eq!(DocKind::from_i16(d.as_i16()), Some(d));
        }
        assert_eq!(DocKind::from_i16(2), None);
        let first: std::collections::HashSet<_> = (0..12).map(palette_color).collect();
        assert_eq!(first.len(), 12, "twelve tokens, twelve colours");
        assert_eq!(palette_color(12), palette_color(0));
        assert_eq!(palette_color(-1), PALETTE[11]);
        assert!(PALETTE.iter().all(|c| c.len() == 7
            && c.starts_with('#')
            && c[1..].bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
