//! Content lines (RFC 5545 §3.1): read exactly, written folded.
//!
//! Unfolding removes a line break (CRLF, or a lone LF) and the one space or tab after it, nothing
//! else: whitespace at the end of a physical line belongs to the value. A logical line is split
//! into name, parameters and value by the §3.1 grammar; the value is kept as written (escapes,
//! trailing whitespace and all), so writing a property back gives the same logical line, apart
//! from names in upper case and quotes around parameter values that need them.

use std::borrow::Cow;

/// One parameter value, and whether the source wrote it as a quoted-string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamValue {
    pub text: String,
    /// Kept so a copy quotes what its source quoted.
    pub quoted: bool,
}

/// A property parameter: its name (upper case) and its values, in the source's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub values: Vec<ParamValue>,
}

/// One content line: name (upper case; names are case-insensitive, RFC 5545 §2), parameters in
/// the source's order, and the value exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub params: Vec<Param>,
    pub value: String,
}

impl Property {
    /// The first value of parameter `name` (case-insensitive).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .and_then(|p| p.values.first())
            .map(|v| v.text.as_str())
    }

    /// Parses one unfolded content line; the error says which part of §3.1 it breaks.
    pub fn parse(line: &str) -> Result<Property, String> {
        let end = line
            .find([';', ':'])
            .ok_or("no ':' between the property name and its value")?;
        let name = checked_name(&line[..end], "property")?;
        let mut rest = &line[end..];
        let mut params = Vec::new();
        while let Some(after) = rest.strip_prefix(';') {
            let eq = after
                .find(['=', ';', ':'])
                .filter(|&i| after.as_bytes()[i] == b'=')
                .ok_or_else(|| {
                    let shown = after.split([';', ':']).next().unwrap_or("");
                    format!("parameter {} of {name} has no '='", quoted(shown))
                })?;
            let pname = checked_name(&after[..eq], "parameter")?;
            let (values, left) = param_values(&after[eq + 1..], &pname)?;
            params.push(Param {
                name: pname,
                values,
            });
            rest = left;
        }
        let value = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("no ':' before the value of {name}"))?;
        Ok(Property {
            name,
            params,
            value: value.to_string(),
        })
    }

    /// Appends the property as folded content lines ending in CRLF.
    pub fn write(&self, out: &mut String) {
        let mut line = String::with_capacity(self.name.len() + self.value.len() + 16);
        line.push_str(&self.name);
        for p in &self.params {
            line.push(';');
            line.push_str(&p.name);
            line.push('=');
            for (i, v) in p.values.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                // §3.2: a value holding ',' ';' or ':' must be a quoted-string.
                if v.quoted || v.text.contains([',', ';', ':']) {
                    line.push('"');
                    line.push_str(&v.text);
                    line.push('"');
                } else {
                    line.push_str(&v.text);
                }
            }
        }
        line.push(':');
        line.push_str(&self.value);
        fold_into(out, &line);
    }
}

/// §3.1 names are `iana-token` / `x-name`; being lenient beyond that keeps real-world
/// X- names with odd characters, while what would make the line ambiguous is refused.
fn checked_name(name: &str, what: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err(format!("a {what} has no name"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | ',' | '=' | ':' | ';'))
    {
        return Err(format!("{what} name {} is not a name", quoted(name)));
    }
    Ok(name.to_ascii_uppercase())
}

/// Part of a line quoted in a reason: at most 60 characters, escaped, so a megabyte line
/// does not become a megabyte reason.
pub(super) fn quoted(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{:?}…", &s[..at]),
        None => format!("{s:?}"),
    }
}

/// The values of one parameter (`paramtext` or `quoted-string`, comma-separated) and the rest
/// of the line after them.
fn param_values<'a>(mut s: &'a str, pname: &str) -> Result<(Vec<ParamValue>, &'a str), String> {
    let mut values = Vec::new();
    loop {
        if let Some(q) = s.strip_prefix('"') {
            let close = q
                .find('"')
                .ok_or_else(|| format!("the quoted value of parameter {pname} is not closed"))?;
            values.push(ParamValue {
                text: q[..close].to_string(),
                quoted: true,
            });
            s = &q[close + 1..];
            if !s.starts_with([',', ';', ':']) {
                return Err(format!("text after the closing quote of parameter {pname}"));
            }
        } else {
            let end = s
                .find([',', ';', ':'])
                .ok_or_else(|| format!("no ':' after parameter {pname}"))?;
            values.push(ParamValue {
                text: s[..end].to_string(),
                quoted: false,
            });
            s = &s[end..];
        }
        match s.strip_prefix(',') {
            Some(next) => s = next,
            None => return Ok((values, s)),
        }
    }
}

/// The logical lines of `text` with the physical line each starts on (1-based). Empty physical
/// lines are skipped (they are not content lines); a line break followed by one space or tab is
/// removed with that one character, and nothing else is.
pub(super) fn unfold(text: &str) -> Vec<(usize, Cow<'_, str>)> {
    let mut out: Vec<(usize, Cow<'_, str>)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let physical = raw.strip_suffix('\r').unwrap_or(raw);
        if physical.is_empty() {
            continue;
        }
        match (physical.strip_prefix([' ', '\t']), out.last_mut()) {
            (Some(cont), Some((_, logical))) => logical.to_mut().push_str(cont),
            _ => out.push((i + 1, Cow::Borrowed(physical))),
        }
    }
    out
}

/// Writes one logical line folded at 75 octets (RFC 5545 §3.1) on character boundaries, each
/// physical line ended by CRLF. Folds fall inside words where they can: some readers trim
/// whitespace at the ends of physical lines, and a fold between two non-blank characters leaves
/// them nothing to trim.
fn fold_into(out: &mut String, line: &str) {
    const FIRST: usize = 75;
    const NEXT: usize = 74; // plus the leading space
    let mut rest = line;
    let mut limit = FIRST;
    loop {
        let cut = if rest.len() <= limit {
            rest.len()
        } else {
            fold_point(rest, limit)
        };
        out.push_str(&rest[..cut]);
        out.push_str("\r\n");
        rest = &rest[cut..];
        if rest.is_empty() {
            return;
        }
        out.push(' ');
        limit = NEXT;
    }
}

fn fold_point(s: &str, limit: usize) -> usize {
    let mut max = limit;
    while !s.is_char_boundary(max) {
        max -= 1;
    }
    let blank = |c: Option<char>| matches!(c, Some(' ' | '\t'));
    let before = |i: usize| s[..i].chars().next_back();
    let at = |i: usize| s[i..].chars().next();
    let inside_word = |i: usize| !blank(before(i)) && !blank(at(i));
    let not_after_blank = |i: usize| !blank(before(i));
    // Look back at most half a line, so a line of blanks still folds near the limit.
    for good in [&inside_word as &dyn Fn(usize) -> bool, &not_after_blank] {
        let mut cut = max;
        while cut > max / 2 {
            if s.is_char_boundary(cut) && good(cut) {
                return cut;
            }
            cut -= 1;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        unfold(text)
            .into_iter()
            .map(|(_, l)| l.into_owned())
            .collect()
    }

    #[test]
    fn unfolding_removes_the_break_and_one_blank_only() {
        assert_eq!(
            lines("SUMMARY:hello \r\n world\r\nX:a\t\n\tb  \r\n"),
            ["SUMMARY:hello world", "X:a\tb  "]
        );
        assert_eq!(lines("A:1\n  two\r\n\r\nB:\r\n"), ["A:1 two", "B:"]);
    }

    #[test]
    fn properties_split_by_the_grammar() {
        let p =
            Property::parse("attendee;CN=\"Doe, Jane: CEO\";x-a=1,,\"b;c\":mailto:x@y ").unwrap();
        assert_eq!(p.name, "ATTENDEE");
        assert_eq!(p.param("cn"), Some("Doe, Jane: CEO"));
        assert_eq!(p.params[1].name, "X-A");
        let texts: Vec<_> = p.params[1].values.iter().map(|v| &v.text[..]).collect();
        assert_eq!(texts, ["1", "", "b;c"]);
        assert_eq!(p.value, "mailto:x@y ");
        assert_eq!(Property::parse("X-A::b").unwrap().value, ":b");
        assert_eq!(Property::parse("X-A:").unwrap().value, "");
        for bad in [
            "NOVALUE",
            "X;A:b",
            "X;A=\"b:c",
            "X;A=\"b\"c:d",
            ":v",
            "A B:c",
            "X;=1:v",
        ] {
            assert!(Property::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writing_folds_so_unfolding_gives_the_line_back() {
        for value in [
            format!("{}  ", "word ".repeat(40)),
            "é".repeat(80),
            format!("{}\t", " ".repeat(200)),
            "日本語のテキスト😀e\u{301}".repeat(12),
        ] {
            let p = Property {
                name: "DESCRIPTION".into(),
                params: vec![],
                value: value.clone(),
            };
            let mut out = String::new();
            p.write(&mut out);
            for phys in out.split_terminator("\r\n") {
                assert!(phys.len() <= 75, "{phys:?}");
            }
            assert_eq!(lines(&out), [format!("DESCRIPTION:{value}")]);
        }
    }
}
