//! What makes two items "the same meeting": the identity key `(organizer, uid)`.
//!
//! The organizer is the lower-cased calendar address without `mailto:`, taken after addresses were
//! rewritten into the target org, so the source item and its copy in the target share one key.
//! Items without an organizer key on their UID alone.
//!
//! The UID is taken clean ([`clean_uid`]): Exchange exports a meeting's Global Object ID (GOID) as
//! hex, with the date of one instance inside ([MS-OXOCAL] 2.2.1.27) and, for meetings made
//! elsewhere, the original UID wrapped inside ([MS-OXCICAL] 2.1.3.1.1.20.26). Series, exceptions
//! and both spellings of a wrapped UID share one clean UID.

use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey {
    /// Lower-cased address without `mailto:`; `None` for items without an ORGANIZER.
    pub organizer: Option<String>,
    pub uid: String,
}

impl IdentityKey {
    /// The key of an item with this organizer and UID (the UID is cleaned, so a stored clean UID
    /// gives the same key again).
    pub fn new(organizer: Option<&str>, uid: &str) -> Self {
        IdentityKey {
            organizer: organizer.map(normalize_address).filter(|o| !o.is_empty()),
            uid: clean_uid(uid).into_owned(),
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
pub(crate) fn strip_mailto(value: &str) -> Option<&str> {
    let head = value.get(..7)?;
    head.eq_ignore_ascii_case("mailto:").then(|| &value[7..])
}

/// The class id every GOID starts with ([MS-OXOCAL] 2.2.1.27), as hex.
const GOID_CLASS_ID: &str = "040000008200E00074C5B7101A82E008";

/// The marker that says a GOID's data wraps a third-party UID ([MS-OXCICAL] 2.1.3.1.1.20.26).
const VCAL_UID: &[u8] = b"vCal-Uid\x01\x00\x00\x00";

/// The bytes of a UID that is a GOID: all hex, at least 82 digits, even length, and the class id.
fn goid_bytes(uid: &str) -> Option<Vec<u8>> {
    let ok = uid.len() >= 82
        && uid.len().is_multiple_of(2)
        && uid.bytes().all(|b| b.is_ascii_hexdigit())
        && uid[..GOID_CLASS_ID.len()].eq_ignore_ascii_case(GOID_CLASS_ID);
    if !ok {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).expect("checked hex") as u8;
    Some(
        uid.as_bytes()
            .chunks(2)
            .map(|p| digit(p[0]) << 4 | digit(p[1]))
            .collect(),
    )
}

/// The UID that identifies a meeting across spellings:
/// - a GOID wrapping a third-party UID (`vCal-Uid`) → that UID;
/// - any other GOID → the clean GOID (instance date, bytes 16–19, zeroed), upper-case hex;
/// - anything else → unchanged.
pub(crate) fn clean_uid(uid: &str) -> Cow<'_, str> {
    let Some(mut bytes) = goid_bytes(uid) else {
        return Cow::Borrowed(uid);
    };
    let size = u32::from_le_bytes(bytes[36..40].try_into().expect("four bytes")) as usize;
    let data = &bytes[40..bytes.len().min(40 + size)];
    if let Some(wrapped) = data.strip_prefix(VCAL_UID) {
        let wrapped = wrapped.strip_suffix(b"\0").unwrap_or(wrapped);
        if let Ok(inner) = std::str::from_utf8(wrapped)
            && !inner.is_empty()
        {
            return Cow::Owned(inner.to_string());
        }
    }
    bytes[16..20].fill(0);
    Cow::Owned(bytes.iter().map(|b| format!("{b:02X}")).collect())
}

/// The GOID form of a third-party UID, as Exchange writes it, optionally for one instance.
pub fn wrap_uid(uid: &str, instance: Option<(u16, u8, u8)>) -> String {
    let mut data = VCAL_UID.to_vec();
    data.extend_from_slice(uid.as_bytes());
    data.push(0);
    let mut b = Vec::with_capacity(40 + data.len());
    b.extend(
        (0..16).map(|i| u8::from_str_radix(&GOID_CLASS_ID[2 * i..2 * i + 2], 16).expect("hex")),
    );
    let (y, m, d) = instance.unwrap_or((0, 0, 0));
    b.extend_from_slice(&y.to_be_bytes());
    b.extend_from_slice(&[m, d]);
    b.extend_from_slice(&[0; 16]); // creation time, reserved
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original instance date a GOID carries (`None` for the series, or for a non-GOID UID).
    fn goid_instance(uid: &str) -> Option<(u16, u8, u8)> {
        let b = goid_bytes(uid)?;
        let date = (u16::from_be_bytes([b[16], b[17]]), b[18], b[19]);
        (date != (0, 0, 0)).then_some(date)
    }

    /// The [MS-OXOCAL] §4.1.2 example: an exception on 2008-03-25.
    const SAMPLE: &str = "040000008200E00074C5B7101A82E00807D803195025D461E473C801000000000000000010000000\
         2A5844B3A444F74A9C246C60886F116B";

    #[test]
    fn the_spec_sample_cleans_to_its_series() {
        assert_eq!(goid_instance(SAMPLE), Some((2008, 3, 25)));
        let clean = clean_uid(SAMPLE);
        assert_eq!(
            clean,
            "040000008200E00074C5B7101A82E00800000000\
             5025D461E473C801000000000000000010000000\
             2A5844B3A444F74A9C246C60886F116B"
        );
        assert_eq!(goid_instance(&clean), None);
        assert_eq!(
            clean_uid(&SAMPLE.to_lowercase()),
            clean,
            "hex case is not identity"
        );
        assert_eq!(clean_uid(&clean), clean, "cleaning is idempotent");
    }

    #[test]
    fn a_wrapped_third_party_uid_unwraps() {
        let google = "qa87q2t552detf773508pdrchc@google.com";
        let wrapped = wrap_uid(google, Some((2026, 11, 21)));
        assert!(wrapped.starts_with(GOID_CLASS_ID));
        assert_eq!(goid_instance(&wrapped), Some((2026, 11, 21)));
        assert_eq!(clean_uid(&wrapped), google);
        // without the trailing NUL too
        let no_nul = wrapped[..wrapped.len() - 2].to_string();
        let mut b = goid_bytes(&no_nul).unwrap();
        let size = u32::from_le_bytes(b[36..40].try_into().unwrap()) - 1;
        b[36..40].copy_from_slice(&size.to_le_bytes());
        let no_nul: String = b.iter().map(|x| format!("{x:02X}")).collect();
        assert_eq!(clean_uid(&no_nul), google);
        assert_eq!(
            IdentityKey::new(Some("mailto:a@x"), &wrapped),
            IdentityKey::new(Some("mailto:a@x"), google)
        );
    }

    #[test]
    fn other_uids_are_left_alone() {
        for uid in [
            "",
            "abc",
            "040000008200E00074C5B7101A82E008",
            &SAMPLE[..80],
            &format!("{SAMPLE}0"),
            &SAMPLE.replace('5', "g"),
        ] {
            assert_eq!(clean_uid(uid), uid);
        }
        let other_class = format!("05{}", &SAMPLE[2..]);
        assert_eq!(clean_uid(&other_class), other_class);
    }

    proptest::proptest! {
        #[test]
        fn wrap_then_clean_gives_the_uid_back(uid in "[ -~]{1,80}", y in 1601u16..4000, m in 1u8..13, d in 1u8..32) {
            let wrapped = wrap_uid(&uid, Some((y, m, d)));
            proptest::prop_assert_eq!(clean_uid(&wrapped), uid.as_str());
        }

        #[test]
        fn every_instance_date_gives_the_same_clean_goid(tail in "([0-9A-F]{2}){1,40}", y in 0u16..=u16::MAX, m: u8, d: u8) {
            let series = format!("{}{tail}", &SAMPLE[..SAMPLE.len() - 32]);
            let instance = format!("{}{y:04X}{m:02X}{d:02X}{}", &series[..32], &series[40..]);
            proptest::prop_assert_eq!(clean_uid(&instance), clean_uid(&series));
        }
    }

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
