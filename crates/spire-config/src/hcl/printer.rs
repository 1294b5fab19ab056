//! Prints a subtree back to HCL text the way hashicorp/hcl v1's printer does with
//! `printer.DefaultConfig`, which is how SPIRE turns a `plugin_data { ... }` block into the
//! configuration string it hands to a plugin.
//!
//! Only subtrees are printed (never whole files), so hcl's "standalone comment" handling,
//! which needs the file's comment list, never applies; comments attached to items are kept.

use super::ast::{ListType, LiteralType, Node, ObjectItem, ObjectList, ObjectType};
use super::token::{Pos, TokenType};

/// The private-use marker hcl puts before heredoc lines that must not be indented.
const UNINDENT: &str = "\u{E123}";

pub(crate) struct Printer {
    /// Treat every position as zero, as hcl's JSON parser leaves them.
    zero_positions: bool,
}

/// Prints `node` like `printer.DefaultConfig.Fprint`.
pub(crate) fn print_node(node: &Node, zero_positions: bool) -> String {
    let p = Printer { zero_positions };
    let out = p.output(node);
    unindent(&out)
}

impl Printer {
    fn line(&self, pos: Pos) -> i64 {
        if self.zero_positions {
            0
        } else {
            pos.line as i64
        }
    }

    fn output(&self, node: &Node) -> String {
        match node {
            Node::ObjectList(l) => self.object_list(l),
            Node::ObjectItem(i) => self.object_item(i),
            Node::Literal(l) => literal(l),
            Node::ListType(l) => self.list(l),
            Node::ObjectType(o) => self.object_type(o),
        }
    }

    fn object_list(&self, l: &ObjectList) -> String {
        let mut buf = String::new();
        let n = l.items.len();
        for (index, item) in l.items.iter().enumerate() {
            buf.push_str(&self.object_item(item));
            if index != n - 1 {
                buf.push('\n');
                let next = &l.items[index + 1];
                if self.line(next.pos()) != self.line(item.pos()) + 1
                    || !is_single_line_object(next)
                    || !is_single_line_object(item)
                {
                    buf.push('\n');
                }
            }
        }
        buf
    }

    fn object_item(&self, o: &ObjectItem) -> String {
        let mut buf = String::new();
        if let Some(lead) = &o.lead_comment {
            for c in &lead.list {
                buf.push_str(&c.text);
                buf.push('\n');
            }
        }
        let key_line = o.keys.first().map(|k| self.line(k.pos)).unwrap_or(0);
        let same_line = self.line(o.val.pos()) == key_line;
        if let Some(line) = &o.line_comment
            && !same_line
        {
            for c in &line.list {
                buf.push_str(&c.text);
                buf.push('\n');
            }
        }
        let assign_valid = o.assign.is_valid();
        for (i, k) in o.keys.iter().enumerate() {
            buf.push_str(&k.text);
            buf.push(' ');
            if assign_valid && i == o.keys.len() - 1 && o.keys.len() == 1 {
                buf.push_str("= ");
            }
        }
        buf.push_str(&self.output(&o.val));
        if let Some(line) = &o.line_comment
            && same_line
        {
            buf.push(' ');
            for c in &line.list {
                buf.push_str(&c.text);
            }
        }
        buf
    }

    fn object_type(&self, o: &ObjectType) -> String {
        let items = &o.list.items;
        let n = items.len();
        let mut buf = String::from("{");
        let mut index = 0usize;
        let mut newline_printed = false;
        while index != n {
            if !newline_printed {
                buf.push('\n');
                newline_printed = true;
            }
            let mut aligned: Vec<&ObjectItem> = Vec::new();
            let start = index;
            for item in &items[start..] {
                if n == 1 {
                    break;
                }
                if lines(&self.object_item(item)) > 2 {
                    break;
                }
                let cur = self.line(item.pos());
                let next = if index != n - 1 {
                    self.line(items[index + 1].pos())
                } else {
                    0
                };
                let prev = if index != 0 {
                    self.line(items[index - 1].pos())
                } else {
                    0
                };
                if cur + 1 == next {
                    aligned.push(item);
                    index += 1;
                    continue;
                }
                if cur - 1 == prev {
                    aligned.push(item);
                    index += 1;
                    if cur + 1 != next {
                        break;
                    }
                    continue;
                }
                break;
            }
            if index != aligned.len() {
                buf.push('\n');
            }
            if !aligned.is_empty() {
                buf.push_str(&indent(&self.aligned_items(&aligned)));
            } else {
                buf.push_str(&indent(&self.object_item(&items[index])));
                index += 1;
            }
            buf.push('\n');
        }
        buf.push('}');
        buf
    }

    fn aligned_items(&self, items: &[&ObjectItem]) -> String {
        let longest_key = items
            .iter()
            .map(|i| i.keys.first().map(|k| k.text.len()).unwrap_or(0))
            .max()
            .unwrap_or(0);
        let longest_val = items
            .iter()
            .map(|i| self.output(&i.val).len())
            .max()
            .unwrap_or(0);
        let mut buf = String::new();
        for (idx, item) in items.iter().enumerate() {
            if let Some(lead) = &item.lead_comment {
                for c in &lead.list {
                    buf.push_str(&c.text);
                    buf.push('\n');
                }
            }
            for (i, k) in item.keys.iter().enumerate() {
                buf.push_str(&k.text);
                buf.push_str(&" ".repeat(longest_key.saturating_sub(k.text.len()) + 1));
                if i == item.keys.len() - 1 && item.keys.len() == 1 {
                    buf.push_str("= ");
                }
            }
            let val = self.output(&item.val);
            buf.push_str(&val);
            let key_line = item.keys.first().map(|k| self.line(k.pos)).unwrap_or(0);
            if self.line(item.val.pos()) == key_line
                && let Some(line) = &item.line_comment
            {
                buf.push_str(&" ".repeat(longest_val.saturating_sub(val.len()) + 1));
                for c in &line.list {
                    buf.push_str(&c.text);
                }
            }
            if idx != items.len() - 1 {
                buf.push('\n');
            }
        }
        buf
    }

    fn list(&self, l: &ListType) -> String {
        if self.is_single_line_list(l) {
            return self.single_line_list(l);
        }
        let mut buf = String::from("[\n");
        let longest = l
            .list
            .iter()
            .filter_map(|i| match i {
                Node::Literal(lit) => Some(lit.token.text.len()),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let mut have_empty_line = false;
        for (i, item) in l.list.iter().enumerate() {
            let mut lead = false;
            if let Node::Literal(lit) = item
                && let Some(lc) = &lit.lead_comment
            {
                lead = true;
                if !have_empty_line && i != 0 {
                    buf.push('\n');
                }
                for c in &lc.list {
                    buf.push_str(&indent(&c.text));
                    buf.push('\n');
                }
            }
            let val = self.output(item);
            buf.push_str(&indent(&val));
            let mut comma = String::from(",");
            if let Node::Literal(lit) = item
                && lit.token.ty == TokenType::Heredoc
            {
                buf.push('\n');
                comma = indent(&comma);
            }
            buf.push_str(&comma);
            if let Node::Literal(lit) = item
                && let Some(lc) = &lit.line_comment
            {
                buf.push(' ');
                buf.push_str(&" ".repeat(longest.saturating_sub(val.len())));
                for c in &lc.list {
                    buf.push_str(&c.text);
                }
            }
            buf.push('\n');
            have_empty_line = lead && i != l.list.len() - 1;
            if have_empty_line {
                buf.push('\n');
            }
        }
        buf.push(']');
        buf
    }

    fn is_single_line_list(&self, l: &ListType) -> bool {
        for item in &l.list {
            if self.line(item.pos()) != self.line(l.lbrack) {
                return false;
            }
            let Node::Literal(lit) = item else {
                return false;
            };
            if lit.token.ty == TokenType::Heredoc && l.list.len() != 1 {
                return false;
            }
            if lit.line_comment.is_some() {
                return false;
            }
        }
        true
    }

    fn single_line_list(&self, l: &ListType) -> String {
        let mut buf = String::from("[");
        for (i, item) in l.list.iter().enumerate() {
            if i != 0 {
                buf.push_str(", ");
            }
            buf.push_str(&self.output(item));
            if let Node::Literal(lit) = item
                && lit.token.ty == TokenType::Heredoc
            {
                buf.push('\n');
            }
        }
        buf.push(']');
        buf
    }
}

fn literal(lit: &LiteralType) -> String {
    let mut text = lit.token.text.clone();
    match lit.token.ty {
        TokenType::Heredoc => {
            if text.ends_with('\n') {
                text.pop();
            }
            heredoc_indent(&text)
        }
        TokenType::String if text.contains('\n') => heredoc_indent(&text),
        _ => text,
    }
}

fn is_single_line_object(item: &ObjectItem) -> bool {
    if item.lead_comment.is_some() || item.assign.is_valid() {
        return false;
    }
    matches!(&item.val, Node::ObjectType(o) if o.list.items.is_empty())
}

fn lines(text: &str) -> usize {
    1 + text.matches('\n').count()
}

fn indent(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut bol = true;
    for c in text.chars() {
        if bol && c != '\n' {
            out.push_str("  ");
        }
        out.push(c);
        bol = c == '\n';
    }
    out
}

fn heredoc_indent(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut bol = false;
    for c in text.chars() {
        if bol && c != '\n' {
            out.push_str(UNINDENT);
        }
        out.push(c);
        bol = c == '\n';
    }
    out
}

/// Removes the indentation before each unindent marker, and the marker.
fn unindent(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(idx) = rest.find(UNINDENT) {
        // hcl leaves a marker alone when it is the very last thing in the buffer.
        if rest.len() - idx <= UNINDENT.len() {
            break;
        }
        res.push_str(&rest[..idx]);
        let keep = res.rfind('\n').map(|i| i + 1).unwrap_or(0);
        res.truncate(keep);
        rest = &rest[idx + UNINDENT.len()..];
    }
    res.push_str(rest);
    res
}
