//! Permanent refusals: a database error that says the values of a write can never be
//! stored (a data exception, an integrity violation, a value too large for its index),
//! as opposed to one that says the database cannot answer now (down, restarting, out
//! of connections, a table missing until an operator restores it).
//!
//! Why it matters (#14): the command path retries transient errors with a long backoff,
//! for up to ~15 minutes. A permanent one retried the same way fails at every delivery,
//! costs a provider call at each when it comes after the run, and ends in the DLQ as if
//! the database had been down. Classified here, the pipeline ends such a command at
//! once with `invalid_request`.
//!
//! Hazards: a unique violation is *not* permanent (the insert path handles conflicts
//! itself; a stray one is a race that a retry resolves), and neither is anything not
//! named below: an unknown error stays transient, which is the safe side (it is
//! retried, then given up with an `internal` event).

/// What kind of value the database refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Too long or too large for its column or index (PostgreSQL 22001, 54000;
    /// SQLite `SQLITE_TOOBIG`).
    TooLarge,
    /// A character the column cannot hold, such as a NUL (PostgreSQL 22021, 22P05).
    BadCharacter,
    /// A number, date or time out of the column's range (PostgreSQL 22003, 22007,
    /// 22008; SQLite `SQLITE_MISMATCH`).
    OutOfRange,
    /// A constraint other than uniqueness (PostgreSQL class 23 but 23505; SQLite
    /// `SQLITE_CONSTRAINT_*` but unique and primary key).
    Constraint,
    /// Another data exception (the rest of PostgreSQL class 22) or a value the driver
    /// could not encode.
    BadValue,
}

impl RefusalKind {
    /// A metric label: `too_large`, `bad_character`, `out_of_range`, `constraint`,
    /// `bad_value`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::TooLarge => "too_large",
            RefusalKind::BadCharacter => "bad_character",
            RefusalKind::OutOfRange => "out_of_range",
            RefusalKind::Constraint => "constraint",
            RefusalKind::BadValue => "bad_value",
        }
    }

    /// A short description, for messages (no SQL, no values).
    pub fn describe(self) -> &'static str {
        match self {
            RefusalKind::TooLarge => "a value too large for the database to store or index",
            RefusalKind::BadCharacter => "a character the database cannot store",
            RefusalKind::OutOfRange => "a value out of the range the database can store",
            RefusalKind::Constraint => "a value the database's constraints refuse",
            RefusalKind::BadValue => "a value the database cannot store",
        }
    }
}

/// A permanent refusal, with the constraint or index it named when the database said
/// (PostgreSQL does for 54000 and class 23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What was refused.
    pub kind: RefusalKind,
    /// The SQLSTATE (PostgreSQL) or extended result code (SQLite), for logs.
    pub code: String,
    /// The constraint or index named, if any.
    pub constraint: Option<String>,
}

/// SQLite result codes (<https://www.sqlite.org/rescode.html>).
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_MISMATCH: i32 = 20;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

/// The permanent refusal `error` is, if it is one.
pub(crate) fn refusal_of(error: &sqlx::Error) -> Option<Refusal> {
    match error {
        sqlx::Error::Encode(_) => Some(Refusal {
            kind: RefusalKind::BadValue,
            code: "encode".to_owned(),
            constraint: None,
        }),
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            let kind = if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                postgres_kind(&code)?
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_kind(code.parse().ok()?)?
            } else {
                return None;
            };
            Some(Refusal {
                kind,
                code: code.into_owned(),
                constraint: db.constraint().map(str::to_owned),
            })
        }
        _ => None,
    }
}

/// By SQLSTATE (<https://www.postgresql.org/docs/current/errcodes-appendix.html>).
fn postgres_kind(sqlstate: &str) -> Option<RefusalKind> {
    let kind = match sqlstate {
        // string_data_right_truncation; program_limit_exceeded (an index row too big).
        "22001" | "54000" => RefusalKind::TooLarge,
        // character_not_in_repertoire (a NUL in text); untranslatable_character (a
        // \u0000 in jsonb); invalid byte sequence.
        "22021" | "22P05" => RefusalKind::BadCharacter,
        // numeric_value_out_of_range; invalid_datetime_format; datetime_field_overflow.
        "22003" | "22007" | "22008" => RefusalKind::OutOfRange,
        // unique_violation: handled by the insert's ON CONFLICT; a stray one is a race.
        "23505" => return None,
        other if other.starts_with("23") => RefusalKind::Constraint,
        other if other.starts_with("22") => RefusalKind::BadValue,
        _ => return None,
    };
    Some(kind)
}

/// By extended result code; the primary code is its low byte.
fn sqlite_kind(code: i32) -> Option<RefusalKind> {
    match (code & 0xff, code) {
        (_, SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY) => None,
        (SQLITE_CONSTRAINT, _) => Some(RefusalKind::Constraint),
        (SQLITE_TOOBIG, _) => Some(RefusalKind::TooLarge),
        (SQLITE_MISMATCH, _) => Some(RefusalKind::OutOfRange),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_data_exceptions_and_integrity_violations_are_permanent() {
        let kind = postgres_kind;
        assert_eq!(kind("22001"), Some(RefusalKind::TooLarge));
        assert_eq!(kind("54000"), Some(RefusalKind::TooLarge));
        assert_eq!(kind("22021"), Some(RefusalKind::BadCharacter));
        assert_eq!(kind("22P05"), Some(RefusalKind::BadCharacter));
        assert_eq!(kind("22003"), Some(RefusalKind::OutOfRange));
        assert_eq!(kind("22008"), Some(RefusalKind::OutOfRange));
        assert_eq!(kind("22P02"), Some(RefusalKind::BadValue));
        assert_eq!(kind("23502"), Some(RefusalKind::Constraint));
        assert_eq!(kind("23514"), Some(RefusalKind::Constraint));
        // A unique violation, and every outage-like error, stays transient.
        for transient in [
            "23505", "42P01", "57P01", "08006", "53300", "40001", "XX000",
        ] {
            assert_eq!(kind(transient), None, "{transient}");
        }
    }

    #[test]
    fn sqlite_constraints_but_uniqueness_are_permanent() {
        assert_eq!(sqlite_kind(275), Some(RefusalKind::Constraint)); // CHECK
        assert_eq!(sqlite_kind(1299), Some(RefusalKind::Constraint)); // NOT NULL
        assert_eq!(sqlite_kind(787), Some(RefusalKind::Constraint)); // FOREIGN KEY
        assert_eq!(sqlite_kind(18), Some(RefusalKind::TooLarge));
        assert_eq!(sqlite_kind(20), Some(RefusalKind::OutOfRange));
        for transient in [2067, 1555, 1, 5, 261, 10, 13, 14] {
            assert_eq!(sqlite_kind(transient), None, "{transient}");
        }
    }
}
