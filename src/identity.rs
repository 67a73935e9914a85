//! What makes two items "the same meeting": the identity key `(organizer, uid)`.
//!
//! The organizer is the lower-cased calendar address without `mailto:`, taken after addresses were
//! rewritten into the target org, so the source item and its copy in the target share one key.
//! Items without an organizer key on their UID alone.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey {
    /// Lower-cased address without `mailto:`; `None` for items without an ORGANIZER.
    pub organizer: Option<String>,
    pub uid: String,
}

impl IdentityKey {
    pub fn new(organizer: Option<&str>, uid: &str) -> Self {
        IdentityKey {
            organizer: organizer.map(normalize_address).filter(|o| !o.is_empty()),
            uid: uid.to_string(),
        }
    }

    /// The organizer as stored in the state database (empty when there is none).
    pub fn organizer_str(&self) -> &str {
        self.organizer.as_deref().unwrap_or("")
    }
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.organizer {
            Some(o) => write!(f, "{o} {}", self.uid),
            None => f.write_str(&self.uid),
        }
    }
}

/// `MAILTO:Alice@Old.Example` → `alice@old.example`.
pub fn normalize_address(value: &str) -> String {
    let v = value.trim();
    let v = strip_mailto(v).unwrap_or(v);
    v.to_lowercase()
}

/// The address part of a `mailto:` URI, whatever the scheme's case.
pub fn strip_mailto(value: &str) -> Option<&str> {
    let head = value.get(..7)?;
    head.eq_ignore_ascii_case("mailto:").then(|| &value[7..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizer_is_normalised() {
        let k = IdentityKey::new(Some("MAILTO:Alice@New.Example"), "u1");
        assert_eq!(k.organizer.as_deref(), Some("alice@new.example"));
        assert_eq!(k, IdentityKey::new(Some("mailto:alice@new.example"), "u1"));
        assert_ne!(k, IdentityKey::new(Some("mailto:alice@new.example"), "u2"));
        assert_eq!(IdentityKey::new(Some(""), "u").organizer, None);
        assert_eq!(IdentityKey::new(None, "u").to_string(), "u");
    }
}
