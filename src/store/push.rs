//! WebDAV-Push (draft-bitfire-webdav-push) as a subscriber speaks it: whether a calendar's
//! server pushes (a Web Push transport among the collection's `transports`), the
//! `push-register` request and its answer, and the key pair and auth secret a subscription is
//! made with. Decrypting a push is never needed: the push URL itself names the calendar.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use super::dav::xml_escape;

pub(crate) const NS: &str = "https://bitfire.at/webdav-push";

/// The PROPFIND body asking a collection for its push properties (not in `allprop`).
pub const PROPFIND: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
    <D:propfind xmlns:D=\"DAV:\" xmlns:P=\"https://bitfire.at/webdav-push\">\
    <D:prop><P:transports/><P:topic/></D:prop></D:propfind>";

/// What a subscription is made with.
#[derive(Clone)]
pub struct Subscribe {
    pub push_url: String,
    /// The P-256 public key, uncompressed (65 bytes).
    pub public_key: Vec<u8>,
    /// 16 random bytes.
    pub auth_secret: Vec<u8>,
    /// Unix ms.
    pub expires_at: i64,
}

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Subscribed {
    /// The subscription's URL (DELETE ends it), absolute.
    pub location: String,
    /// Unix ms: the server's `Expires`, or what was asked.
    pub expires_at: i64,
}

/// A subscriber's key pair and auth secret.
pub struct Keys {
    /// PKCS#8.
    pub private: Vec<u8>,
    /// Uncompressed P-256 point.
    pub public: Vec<u8>,
    pub auth: Vec<u8>,
}

/// A new subscriber key pair and auth secret.
pub fn new_keys() -> Result<Keys, String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "generating a P-256 key failed".to_string())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "reading back a generated P-256 key failed".to_string())?;
    let public = pair.public_key().as_ref().to_vec();
    Ok(Keys {
        private: pkcs8.as_ref().to_vec(),
        public,
        auth: random_bytes(16)?,
    })
}

/// The public key of a kept PKCS#8 private key.
pub fn public_key_of(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
        .map(|p| p.public_key().as_ref().to_vec())
        .map_err(|_| "a kept push key is not a P-256 PKCS#8 key".to_string())
}

/// `n` bytes from the system's secure random source.
pub(crate) fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "the system's random source failed".to_string())?;
    Ok(b)
}

/// An unguessable push URL token (256 bits).
pub fn new_token() -> Result<String, String> {
    random_bytes(32).map(|b| B64.encode(b))
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn unb64(text: &str) -> Result<Vec<u8>, String> {
    B64.decode(text).map_err(|e| format!("not base64url: {e}"))
}

/// Whether a PROPFIND answer for the push properties offers a Web Push transport.
pub(crate) fn offers_web_push(xml: &str) -> Result<bool, roxmltree::Error> {
    let doc = roxmltree::Document::parse(xml)?;
    Ok(doc.descendants().any(|n| {
        n.tag_name().namespace() == Some(NS)
            && n.tag_name().name() == "web-push"
            && n.ancestors().any(|a| {
                a.tag_name().namespace() == Some(NS) && a.tag_name().name() == "transports"
            })
    }))
}

/// The `push-register` body: a Web Push subscription, content updates at depth 1.
pub(crate) fn register_body(s: &Subscribe) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <push-register xmlns=\"{NS}\" xmlns:D=\"DAV:\">\
         <subscription><web-push-subscription>\
         <push-resource>{}</push-resource>\
         <content-encoding>aes128gcm</content-encoding>\
         <subscription-public-key type=\"p256dh\">{}</subscription-public-key>\
         <auth-secret>{}</auth-secret>\
         </web-push-subscription></subscription>\
         <trigger><content-update><D:depth>1</D:depth></content-update></trigger>\
         <expires>{}</expires>\
         </push-register>",
        xml_escape(&s.push_url),
        b64(&s.public_key),
        b64(&s.auth_secret),
        http_date(s.expires_at),
    )
}

/// An RFC 1123 date (`Expires`), from unix ms.
pub(crate) fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Unix ms of an RFC 1123 date.
pub(crate) fn parse_http_date(v: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(v.trim())
        .ok()
        .map(|d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_a_p256_point_and_a_16_byte_secret_and_survive_keeping() {
        let Keys {
            private: pkcs8,
            public,
            auth,
        } = new_keys().unwrap();
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 4, "uncompressed point");
        assert_eq!(auth.len(), 16);
        let kept = b64(&pkcs8);
        assert_eq!(public_key_of(&unb64(&kept).unwrap()).unwrap(), public);
        assert_ne!(new_token().unwrap(), new_token().unwrap());
    }

    #[test]
    fn finds_web_push_only_inside_transports() {
        let offered = r#"<D:multistatus xmlns:D="DAV:" xmlns:P="https://bitfire.at/webdav-push">
            <D:response><D:href>/c/</D:href><D:propstat><D:prop>
            <P:transports><P:web-push><P:vapid-public-key type="p256ecdsa">BA</P:vapid-public-key></P:web-push></P:transports>
            <P:topic>t</P:topic></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;
        assert!(offers_web_push(offered).unwrap());
        let none = r#"<D:multistatus xmlns:D="DAV:" xmlns:P="https://bitfire.at/webdav-push">
            <D:response><D:href>/c/</D:href><D:propstat><D:prop><P:transports/><P:topic/></D:prop>
            <D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response></D:multistatus>"#;
        assert!(!offers_web_push(none).unwrap());
    }

    #[test]
    fn dates_go_both_ways() {
        let ms = 1_796_335_200_000;
        assert_eq!(http_date(ms), "Thu, 03 Dec 2026 22:00:00 GMT");
        assert_eq!(parse_http_date(&http_date(ms)), Some(ms));
        let body = register_body(&Subscribe {
            push_url: "https://h/push/a&b".into(),
            public_key: vec![4; 65],
            auth_secret: vec![1; 16],
            expires_at: ms,
        });
        assert!(body.contains("<push-resource>https://h/push/a&amp;b</push-resource>"));
        assert!(body.contains("<expires>Thu, 03 Dec 2026 22:00:00 GMT</expires>"));
    }
}
