//! Components (RFC 5545 §3.4, §3.6): the BEGIN/END nesting of content lines, in the source's
//! order. Any component name is accepted (VAVAILABILITY, VLOCATION, X- components…): what tandem
//! does not interpret it carries as it is.

use super::content::{Property, quoted, unfold};
use super::error::{ItemError, MAX_DEPTH};

/// A component: its name (upper case), its properties and its sub-components, each in the
/// source's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub props: Vec<Property>,
    pub subs: Vec<Component>,
}

impl Component {
    pub fn new(name: &str) -> Component {
        Component {
            name: name.to_string(),
            props: Vec::new(),
            subs: Vec::new(),
        }
    }

    /// The value of the first property `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// The UID, without the blanks around it.
    pub fn uid(&self) -> Option<&str> {
        self.value("UID").map(str::trim).filter(|u| !u.is_empty())
    }

    /// Calls `f` with the properties of this component and of every one inside it.
    pub(crate) fn for_each_props_mut(&mut self, f: &mut impl FnMut(&mut Vec<Property>)) {
        f(&mut self.props);
        for s in &mut self.subs {
            s.for_each_props_mut(f);
        }
    }

    /// Appends the component as folded content lines.
    pub fn write(&self, out: &mut String) {
        out.push_str("BEGIN:");
        out.push_str(&self.name);
        out.push_str("\r\n");
        for p in &self.props {
            p.write(out);
        }
        for s in &self.subs {
            s.write(out);
        }
        out.push_str("END:");
        out.push_str(&self.name);
        out.push_str("\r\n");
    }
}

/// Every VCALENDAR in `text` (an iCalendar stream, §3.4).
pub(super) fn parse_stream(text: &str) -> Result<Vec<Component>, ItemError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text); // Outlook and Windows tools write a BOM
    let mut done = Vec::new();
    let mut open: Vec<(usize, Component)> = Vec::new();
    let structure = |line: usize, reason: String| ItemError::Structure { line, reason };
    for (line, logical) in unfold(text) {
        let prop = Property::parse(&logical).map_err(|reason| ItemError::Line { line, reason })?;
        match prop.name.as_str() {
            "BEGIN" => {
                let name = component_name(&prop.value, line)?;
                if open.is_empty() && name != "VCALENDAR" {
                    return Err(ItemError::OutsideCalendar {
                        line,
                        reason: format!("BEGIN:{name} outside any VCALENDAR"),
                    });
                }
                if open.len() >= MAX_DEPTH {
                    return Err(ItemError::TooDeep { line });
                }
                open.push((line, Component::new(&name)));
            }
            "END" => {
                let name = component_name(&prop.value, line)?;
                let (_, comp) = open
                    .pop()
                    .ok_or_else(|| structure(line, format!("END:{name} without a BEGIN")))?;
                if comp.name != name {
                    return Err(structure(
                        line,
                        format!("END:{name} where END:{} was due", comp.name),
                    ));
                }
                match open.last_mut() {
                    Some((_, parent)) => parent.subs.push(comp),
                    None => done.push(comp),
                }
            }
            _ => match open.last_mut() {
                Some((_, comp)) => comp.props.push(prop),
                None => {
                    return Err(ItemError::OutsideCalendar {
                        line,
                        reason: format!("{} outside any VCALENDAR", prop.name),
                    });
                }
            },
        }
    }
    if let Some((line, comp)) = open.pop() {
        return Err(structure(
            line,
            format!("BEGIN:{} is never ended", comp.name),
        ));
    }
    Ok(done)
}

fn component_name(value: &str, line: usize) -> Result<String, ItemError> {
    let name = value.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ItemError::Line {
            line,
            reason: format!("{} is not a component name", quoted(value)),
        });
    }
    Ok(name.to_ascii_uppercase())
}
