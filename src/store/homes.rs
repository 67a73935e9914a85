//! A user's home on a CalDAV server, as bodies sent and answers read: the home a principal
//! names (`calendar-home-set`, RFC 4791 §6.2.1), the collections of a home with their
//! properties (one PROPFIND Depth 1), and a calendar made (MKCALENDAR, RFC 4791 §5.3.1) or its
//! name and colour changed (PROPPATCH).

use http::Request;
use roxmltree::{Document, Node};

use super::caldav::CaldavStore;
use super::dav::{malformed, path_of, refused, same_path, xml_escape};
use crate::domain::error::{ErrorKind, StoreError, StoreResult};
use crate::domain::mailbox::{CalendarProps, Collection, CollectionKind, HomeListing};
use crate::domain::types::CalendarPath;

impl CaldavStore {
    /// Sends `method` to `path` with an XML `body` (and `depth`); the answer's body, or the
    /// server's refusal.
    async fn send_xml(
        &self,
        method: &str,
        path: &str,
        depth: Option<&str>,
        body: String,
    ) -> StoreResult<String> {
        let url = self.url(path);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/xml; charset=utf-8");
        if let Some(depth) = depth {
            req = req.header("depth", depth);
        }
        let (status, _, answer) = self.raw(method, path, req.body(body)).await?;
        match status.is_success() {
            true => Ok(answer),
            false => Err(refused(method, &url, status, &answer)),
        }
    }

    pub(super) async fn home_named_by(&self, principal: &str) -> StoreResult<CalendarPath> {
        let url = self.url(principal);
        let body = PRINCIPAL_PROPFIND.to_string();
        let answer = self
            .send_xml("PROPFIND", principal, Some("0"), body)
            .await?;
        let home = parse_home_set(&answer).map_err(|e| malformed("PROPFIND", &url, e))?;
        let home = home.ok_or_else(|| {
            StoreError::new(
                ErrorKind::NotFound,
                format!("PROPFIND {url}: the principal names no calendar-home-set"),
            )
        })?;
        format!("{}/", home.trim_end_matches('/'))
            .parse()
            .map_err(|e| StoreError::new(ErrorKind::InvalidData, format!("PROPFIND {url}: {e}")))
    }

    pub(super) async fn home_listing(&self, home: &CalendarPath) -> StoreResult<HomeListing> {
        let body = HOME_PROPFIND.to_string();
        let answer = self
            .send_xml("PROPFIND", home.as_str(), Some("1"), body)
            .await?;
        let mut listing = parse_home(home, &answer)
            .map_err(|e| malformed("PROPFIND", &self.url(home.as_str()), e))?;
        // SOGo shows a calendar to anyone but its owner as "NAME (OWNER <ADDRESS>)".
        if crate::store::CalendarStore::software(self) == Some("SOGo") {
            for c in &mut listing.collections {
                if let Some(name) = &mut c.props.displayname {
                    *name = without_owner(name).to_string();
                }
            }
        }
        Ok(listing)
    }

    pub(super) async fn mkcalendar(
        &self,
        cal: &CalendarPath,
        props: &CalendarProps,
    ) -> StoreResult<()> {
        let body = mkcalendar_body(props);
        self.send_xml("MKCALENDAR", cal.as_str(), None, body)
            .await
            .map(|_| ())
    }

    pub(super) async fn proppatch(
        &self,
        cal: &CalendarPath,
        props: &CalendarProps,
    ) -> StoreResult<()> {
        let url = self.url(cal.as_str());
        let answer = self
            .send_xml("PROPPATCH", cal.as_str(), None, proppatch_body(props))
            .await?;
        all_set(&answer)
            .map_err(|e| StoreError::new(ErrorKind::Permanent, format!("PROPPATCH {url}: {e}")))
    }
}

const DAV: &str = "DAV:";
const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
const APPLE: &str = "http://apple.com/ns/ical/";
const CALSERVER: &str = "http://calendarserver.org/ns/";

/// The PROPFIND body asking a principal for its calendar home.
pub(super) const PRINCIPAL_PROPFIND: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
    <d:propfind xmlns:d=\"DAV:\" xmlns:c=\"urn:ietf:params:xml:ns:caldav\">\
    <d:prop><c:calendar-home-set/></d:prop></d:propfind>";

/// The PROPFIND body asking a home's collections (Depth 1) for what discovery needs. The
/// scheduling inbox answers `schedule-default-calendar-URL`.
pub(super) const HOME_PROPFIND: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
    <d:propfind xmlns:d=\"DAV:\" xmlns:c=\"urn:ietf:params:xml:ns:caldav\" \
    xmlns:a=\"http://apple.com/ns/ical/\" xmlns:s=\"http://calendarserver.org/ns/\">\
    <d:prop><d:resourcetype/><d:displayname/><d:owner/><a:calendar-color/>\
    <c:calendar-description/><c:supported-calendar-component-set/><c:calendar-timezone/>\
    <c:schedule-default-calendar-URL/><s:source/></d:prop></d:propfind>";

fn is(n: &Node, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == name
}

/// The first descendant element `ns:name` of `n`.
fn find<'a, 'i>(n: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    n.descendants().find(|c| is(c, ns, name))
}

/// The path of the first `DAV:href` inside `n`.
fn href_in(n: Node) -> Option<String> {
    let text = find(n, DAV, "href")?.text()?.trim();
    (!text.is_empty()).then(|| path_of(text).to_string())
}

/// The properties a `DAV:response` found (those of its `200` propstats).
fn found_props<'a, 'i>(response: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    response
        .children()
        .filter(|c| is(c, DAV, "propstat"))
        .filter(|ps| {
            find(*ps, DAV, "status")
                .and_then(|s| s.text())
                .is_none_or(|t| t.split_whitespace().nth(1) == Some("200"))
        })
        .filter_map(|ps| find(ps, DAV, "prop"))
        .flat_map(|p| p.children().filter(Node::is_element))
}

/// The calendar home a principal's PROPFIND answer names.
pub(super) fn parse_home_set(body: &str) -> Result<Option<String>, String> {
    let doc = Document::parse(body).map_err(|e| e.to_string())?;
    let responses = doc.descendants().filter(|n| is(n, DAV, "response"));
    Ok(responses
        .flat_map(found_props)
        .find(|p| is(p, CALDAV, "calendar-home-set"))
        .and_then(href_in))
}

/// A home's PROPFIND Depth 1 answer: its calendars, scheduling collections and subscriptions
/// (other collections are not calendars and are left out), its owner, and the default calendar
/// its scheduling inbox names.
pub(super) fn parse_home(home: &CalendarPath, body: &str) -> Result<HomeListing, String> {
    let doc = Document::parse(body).map_err(|e| e.to_string())?;
    let mut listing = HomeListing::default();
    for response in doc.descendants().filter(|n| is(n, DAV, "response")) {
        let Some(href) = response
            .children()
            .find(|c| is(c, DAV, "href"))
            .and_then(|h| h.text())
        else {
            continue;
        };
        let path = path_of(href.trim());
        let props: Vec<Node> = found_props(response).collect();
        let prop = |ns: &str, name: &str| props.iter().copied().find(|p| is(p, ns, name));
        let owner = prop(DAV, "owner").and_then(href_in);
        if same_path(path, home.as_str()) {
            listing.owner = owner;
            continue;
        }
        if let Some(default) = prop(CALDAV, "schedule-default-calendar-URL").and_then(href_in) {
            listing.default = default.parse().ok();
        }
        let Some(kind) = prop(DAV, "resourcetype").and_then(kind_of) else {
            continue;
        };
        let Ok(path) = format!("{}/", path.trim_end_matches('/')).parse::<CalendarPath>() else {
            continue;
        };
        let text = |ns: &str, name: &str| {
            prop(ns, name)
                .and_then(|p| p.text())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        };
        let components = prop(CALDAV, "supported-calendar-component-set")
            .map(|set| {
                set.children()
                    .filter(|c| is(c, CALDAV, "comp"))
                    .filter_map(|c| c.attribute("name").map(str::to_ascii_uppercase))
                    .collect()
            })
            .unwrap_or_default();
        listing.collections.push(Collection {
            path,
            kind,
            props: CalendarProps {
                displayname: text(DAV, "displayname"),
                color: text(APPLE, "calendar-color"),
                description: text(CALDAV, "calendar-description"),
                components,
                timezone: text(CALDAV, "calendar-timezone"),
            },
            owner,
        });
    }
    Ok(listing)
}

/// A display name without the " (OWNER <ADDRESS>)" SOGo adds for other users.
fn without_owner(name: &str) -> &str {
    match name.rsplit_once(" (") {
        Some((plain, owner)) if owner.ends_with(">)") && owner.contains(" <") => plain,
        _ => name,
    }
}

/// What a `resourcetype` makes a collection, if discovery cares about it.
fn kind_of(rtype: Node) -> Option<CollectionKind> {
    let has = |ns: &str, name: &str| rtype.children().any(|c| is(&c, ns, name));
    // A calendar that is also its user's scheduling inbox (SOGo's `personal`) is a calendar.
    if has(CALSERVER, "subscribed") {
        Some(CollectionKind::Subscription)
    } else if has(CALDAV, "calendar") {
        Some(CollectionKind::Calendar)
    } else if has(CALDAV, "schedule-inbox") || has(CALDAV, "schedule-outbox") {
        Some(CollectionKind::Scheduling)
    } else {
        None
    }
}

/// The `prop` elements that give a calendar `props` (name, colour, description, and with
/// `all`, components and time zone, which only a new calendar takes).
fn prop_elements(props: &CalendarProps, all: bool) -> String {
    let mut out = String::new();
    let mut text = |tag: &str, value: &Option<String>| {
        if let Some(v) = value {
            out.push_str(&format!("<{tag}>{}</{tag}>", xml_escape(v)));
        }
    };
    text("d:displayname", &props.displayname);
    text("a:calendar-color", &props.color);
    text("c:calendar-description", &props.description);
    if all {
        text("c:calendar-timezone", &props.timezone);
        if !props.components.is_empty() {
            out.push_str("<c:supported-calendar-component-set>");
            for comp in &props.components {
                out.push_str(&format!("<c:comp name=\"{}\"/>", xml_escape(comp)));
            }
            out.push_str("</c:supported-calendar-component-set>");
        }
    }
    out
}

const NAMESPACES: &str = "xmlns:d=\"DAV:\" xmlns:c=\"urn:ietf:params:xml:ns:caldav\" \
    xmlns:a=\"http://apple.com/ns/ical/\"";

/// The MKCALENDAR body making a calendar with `props`.
pub(super) fn mkcalendar_body(props: &CalendarProps) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><c:mkcalendar {NAMESPACES}><d:set><d:prop>{}\
         </d:prop></d:set></c:mkcalendar>",
        prop_elements(props, true)
    )
}

/// The PROPPATCH body setting a calendar's name, colour and description as `props` has them.
pub(super) fn proppatch_body(props: &CalendarProps) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><d:propertyupdate {NAMESPACES}><d:set><d:prop>{}\
         </d:prop></d:set></d:propertyupdate>",
        prop_elements(props, false)
    )
}

/// Whether a PROPPATCH answer (a multistatus, or a bare success) set every property.
pub(super) fn all_set(body: &str) -> Result<(), String> {
    if body.trim().is_empty() {
        return Ok(());
    }
    let doc = Document::parse(body).map_err(|e| e.to_string())?;
    let refused: Vec<String> = doc
        .descendants()
        .filter(|n| is(n, DAV, "propstat"))
        .filter_map(|ps| {
            let status = find(ps, DAV, "status")?.text()?.to_string();
            let code = status.split_whitespace().nth(1)?;
            (code != "200").then(|| {
                let names: Vec<&str> = find(ps, DAV, "prop")
                    .into_iter()
                    .flat_map(|p| p.children().filter(Node::is_element))
                    .map(|p| p.tag_name().name())
                    .collect();
                format!("{} ({})", names.join(", "), status.trim())
            })
        })
        .collect();
    match refused.is_empty() {
        true => Ok(()),
        false => Err(format!("refused {}", refused.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = r#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:a="http://apple.com/ns/ical/" xmlns:s="http://calendarserver.org/ns/">
 <d:response><d:href>/dav/alice/</d:href><d:propstat><d:prop>
  <d:resourcetype><d:collection/></d:resourcetype><d:owner><d:href>/principals/alice/</d:href></d:owner>
 </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
 <d:response><d:href>https://h.example/dav/alice/work</d:href><d:propstat><d:prop>
  <d:resourcetype><d:collection/><c:calendar/></d:resourcetype>
  <d:displayname>Work &amp; co</d:displayname><a:calendar-color>#FF0000FF</a:calendar-color>
  <c:supported-calendar-component-set><c:comp name="VTODO"/></c:supported-calendar-component-set>
  <d:owner><d:href>/principals/alice/</d:href></d:owner>
 </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 <d:propstat><d:prop><c:calendar-description/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>
 <d:response><d:href>/dav/alice/inbox/</d:href><d:propstat><d:prop>
  <d:resourcetype><d:collection/><c:schedule-inbox/></d:resourcetype>
  <c:schedule-default-calendar-URL><d:href>/dav/alice/personal/</d:href></c:schedule-default-calendar-URL>
 </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
 <d:response><d:href>/dav/alice/holidays/</d:href><d:propstat><d:prop>
  <d:resourcetype><d:collection/><s:subscribed/></d:resourcetype>
 </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
 <d:response><d:href>/dav/alice/notes/</d:href><d:propstat><d:prop>
  <d:resourcetype><d:collection/></d:resourcetype>
 </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
</d:multistatus>"#;

    #[test]
    fn a_home_lists_its_calendars_with_their_properties() {
        let home: CalendarPath = "/dav/alice/".parse().unwrap();
        let l = parse_home(&home, HOME).unwrap();
        assert_eq!(l.owner.as_deref(), Some("/principals/alice/"));
        assert_eq!(l.default.unwrap().as_str(), "/dav/alice/personal/");
        let kinds: Vec<(&str, CollectionKind)> = (l.collections.iter())
            .map(|c| (c.path.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("/dav/alice/work/", CollectionKind::Calendar),
                ("/dav/alice/inbox/", CollectionKind::Scheduling),
                ("/dav/alice/holidays/", CollectionKind::Subscription),
            ]
        );
        let work = &l.collections[0];
        assert_eq!(work.props.displayname.as_deref(), Some("Work & co"));
        assert_eq!(work.props.color.as_deref(), Some("#FF0000FF"));
        assert_eq!(work.props.components, ["VTODO"]);
        assert_eq!(work.props.description, None);
        assert_eq!(work.segment(), "work");
    }

    #[test]
    fn sogo_names_lose_their_owner() {
        assert_eq!(without_owner("Work (alice <alice@example.org>)"), "Work");
        assert_eq!(
            without_owner("Personal Calendar (alice <a@b>)"),
            "Personal Calendar"
        );
        assert_eq!(without_owner("Trip (2026)"), "Trip (2026)");
        assert_eq!(without_owner("Work"), "Work");
    }

    #[test]
    fn a_principal_names_its_home() {
        let body = r#"<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
 <d:response><d:href>/principals/bob/</d:href><d:propstat><d:prop>
 <c:calendar-home-set><d:href>/calendars/bob/</d:href></c:calendar-home-set>
 </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#;
        assert_eq!(
            parse_home_set(body).unwrap().as_deref(),
            Some("/calendars/bob/")
        );
        assert!(parse_home_set("<not xml").is_err());
    }

    #[test]
    fn bodies_carry_the_properties_escaped() {
        let props = CalendarProps {
            displayname: Some("R&D <team>".into()),
            color: Some("#00FF00".into()),
            components: vec!["VTODO".into()],
            ..Default::default()
        };
        let mk = mkcalendar_body(&props);
        assert!(mk.contains("<d:displayname>R&amp;D &lt;team&gt;</d:displayname>"));
        assert!(mk.contains("<c:comp name=\"VTODO\"/>"));
        Document::parse(&mk).unwrap();
        let patch = proppatch_body(&props);
        assert!(!patch.contains("comp"));
        Document::parse(&patch).unwrap();
        let refused = r#"<d:multistatus xmlns:d="DAV:" xmlns:a="http://apple.com/ns/ical/"><d:response><d:href>/c/</d:href>
 <d:propstat><d:prop><d:displayname/></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 <d:propstat><d:prop><a:calendar-color/></d:prop><d:status>HTTP/1.1 403 Forbidden</d:status></d:propstat>
 </d:response></d:multistatus>"#;
        assert!(all_set(refused).unwrap_err().contains("calendar-color"));
        assert!(all_set("").is_ok());
    }
}
