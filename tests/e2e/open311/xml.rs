//! A small XML reader for the Open311 documents (elements, text, entities).

// A strict reader for the XML the standard's documents use: the declaration, elements without
// attributes, text, the five entities and character references. Anything else is an error, so a
// document it reads is well-formed.

#[derive(Debug)]
pub(super) struct Element {
    pub(super) name: String,
    pub(super) children: Vec<Element>,
    pub(super) text: String,
}

impl Element {
    pub(super) fn all(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    pub(super) fn child(&self, name: &str) -> &Element {
        let found = self.all(name);
        assert_eq!(found.len(), 1, "one <{name}> in <{}>", self.name);
        found[0]
    }

    pub(super) fn text(&self, name: &str) -> &str {
        &self.child(name).text
    }
}

pub(super) fn parse_xml(doc: &str) -> Result<Element, String> {
    let rest = doc
        .strip_prefix(r#"<?xml version="1.0" encoding="utf-8"?>"#)
        .ok_or("no XML declaration")?;
    let mut rest = rest.trim_start();
    let root = element(&mut rest)?;
    if !rest.trim().is_empty() {
        return Err(format!("content after the root element: {rest:?}"));
    }
    Ok(root)
}

pub(super) fn element(s: &mut &str) -> Result<Element, String> {
    let tag = s.strip_prefix('<').ok_or("expected <")?;
    let end = tag.find(['>', '/']).ok_or("unterminated tag")?;
    let name = &tag[..end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad element name {name:?}"));
    }
    let mut el = Element {
        name: name.to_string(),
        children: vec![],
        text: String::new(),
    };
    if let Some(rest) = tag[end..].strip_prefix("/>") {
        *s = rest;
        return Ok(el);
    }
    *s = tag[end..].strip_prefix('>').ok_or("bad tag")?;
    loop {
        if let Some(rest) = s.strip_prefix("</") {
            let end = rest.find('>').ok_or("unterminated end tag")?;
            if &rest[..end] != name {
                return Err(format!("</{}> closes <{name}>", &rest[..end]));
            }
            *s = &rest[end + 1..];
            return Ok(el);
        } else if s.starts_with('<') {
            el.children.push(element(s)?);
        } else {
            let end = s.find('<').ok_or(format!("<{name}> is not closed"))?;
            el.text.push_str(&unescape(&s[..end])?);
            *s = &s[end..];
        }
    }
}

pub(super) fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or("unterminated entity")?;
        let entity = &after[..end];
        let code = |digits: &str, radix| u32::from_str_radix(digits, radix).ok();
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => match e.strip_prefix("#x").or_else(|| e.strip_prefix("#X")) {
                Some(hex) => code(hex, 16).and_then(char::from_u32),
                None => e
                    .strip_prefix('#')
                    .and_then(|d| code(d, 10))
                    .and_then(char::from_u32),
            },
        };
        out.push(c.ok_or(format!("unknown entity &{entity};"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
