//! Locating configuration errors in the YAML text: the dotted key of a parser error's line, and
//! the line of a dotted key.

use super::ConfigError;

/// Turns a YAML parser message into a [`ConfigError`] naming the dotted key at its line.
pub(crate) fn yaml_error(text: &str, msg: &str) -> ConfigError {
    let line = extract_line(msg);
    let first = msg.lines().next().unwrap_or(msg).trim();
    // Drop the parser's own "error: line N column M: " prefix; the line is reported separately.
    let message = first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map_or(first, |(_, rest)| rest)
        .to_owned();
    let key = line
        .and_then(|l| key_at_line(text, l))
        .unwrap_or_else(|| "(document)".into());
    ConfigError { key, line, message }
}

/// The dotted path of the mapping key written on 1-based `line` (`web.listen_address`),
/// found by walking up to less-indented parent keys.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start();
        let (t, indent) = match t.strip_prefix("- ") {
            Some(rest) => (rest, indent + 2),
            None => (t, indent),
        };
        let (k, _) = t.split_once(':')?;
        let k = k.trim().trim_matches('"').trim_matches('\'');
        (!k.is_empty() && !k.starts_with('#') && !k.contains(' ')).then(|| (indent, k.to_owned()))
    };
    let (mut indent, first) = key_of(lines.get(line.checked_sub(1)?)?)?;
    let mut path = vec![first];
    for l in lines[..line - 1].iter().rev() {
        if let Some((i, k)) = key_of(l)
            && i < indent
        {
            path.push(k);
            indent = i;
            if i == 0 {
                break;
            }
        }
    }
    path.reverse();
    Some(path.join("."))
}

fn extract_line(msg: &str) -> Option<usize> {
    let i = msg.find("line ")?;
    let digits: String = msg[i + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The 1-based line where the last segment of a dotted key (`a.b[2].c`) is written as `c:`,
/// searching after its parents' lines.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for seg in key.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if name.is_empty() {
            continue;
        }
        let hit = lines.iter().enumerate().skip(from).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{name}:")) || t.starts_with(&format!("\"{name}\":"))
        });
        let Some((i, _)) = hit else { return found };
        from = i;
        found = Some(i + 1);
        if let Some(n) = index {
            // The n-th `- ` item below the key.
            let item = lines
                .iter()
                .enumerate()
                .skip(i + 1)
                .filter(|(_, l)| l.trim_start().starts_with("- "))
                .nth(n);
            let Some((j, _)) = item else { return found };
            from = j;
            found = Some(j + 1);
        }
    }
    found
}
