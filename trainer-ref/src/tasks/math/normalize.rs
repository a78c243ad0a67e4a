//! Answer normalisation and equality (a string-level subset of Qwen-Math's `strip_string` plus
//! numeric comparison; no symbolic algebra — see the module docs of [`crate::tasks::math`]).

use super::extract::matching_brace;

/// Relative tolerance of numeric equality.
pub const REL_TOLERANCE: f64 = 1e-6;

/// Normalises an answer, in this order: drop newlines and LaTeX spacing (`\!`, `\,`, `\;`,
/// `\:`); `\tfrac`/`\dfrac` → `\frac`; drop `\left`/`\right`, degree marks, `$`, `\(`/`\)`; drop a
/// trailing `\text{…}` unit when something precedes it; unwrap `\text{…}`, `\textbf{…}`,
/// `\mbox{…}`, `\mathrm{…}`; drop `%`; remove whitespace; take the right side of a short
/// `x=` prefix (≤ 2 characters before the only `=`); strip trailing dots; `.5` → `0.5`;
/// `\sqrt3` → `\sqrt{3}`; `\frac12` → `\frac{1}{2}`; thousands commas of a number removed;
/// trailing zeros of a decimal removed (`2.50` → `2.5`, `72.0` → `72`); an integer `a/b` →
/// `\frac{a}{b}`.
#[must_use]
pub fn normalize_answer(answer: &str) -> String {
    let mut s: String = answer.trim().chars().filter(|&c| c != '\n' && c != '\r').collect();
    for (from, to) in [
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\tfrac", "\\frac"),
        ("\\dfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\(", ""),
        ("\\)", ""),
    ] {
        s = s.replace(from, to);
    }
    s = drop_trailing_unit(&s);
    for command in ["\\text", "\\textbf", "\\mbox", "\\mathrm"] {
        s = unwrap_command(&s, command);
    }
    s = s.replace("\\%", "").replace('%', "");
    s.retain(|c| !c.is_whitespace());
    if let Some((left, right)) = s.split_once('=')
        && left.chars().count() <= 2
        && !right.contains('=')
    {
        s = right.to_string();
    }
    let s = s.trim_end_matches('.');
    let mut s = if let Some(rest) = s.strip_prefix("-.") {
        format!("-0.{rest}")
    } else if let Some(rest) = s.strip_prefix('.') {
        format!("0.{rest}")
    } else {
        s.replace("{.", "{0.")
    };
    s = fix_sqrt(&s);
    s = fix_fracs(&s);
    s = strip_thousands_commas(&s);
    s = trim_decimal_zeros(&s);
    slash_to_frac(&s)
}

/// Whether `pred` and `gold` are the same answer: equal after [`normalize_answer`], or both
/// numbers (integers, decimals, `a/b`, `\frac{a}{b}`) within a relative [`REL_TOLERANCE`].
#[must_use]
pub fn answers_match(pred: &str, gold: &str) -> bool {
    let (p, g) = (normalize_answer(pred), normalize_answer(gold));
    if p == g {
        return !p.is_empty();
    }
    match (parse_numeric(&p), parse_numeric(&g)) {
        (Some(a), Some(b)) => a == b || (a - b).abs() <= REL_TOLERANCE * a.abs().max(b.abs()),
        _ => false,
    }
}

/// The value of a normalised number: `-?\d+`, `-?\d*\.\d+`, `a/b`, `\frac{a}{b}`, `-\frac{a}{b}`
/// (parts themselves plain numbers); `None` otherwise or for a zero denominator.
#[must_use]
pub fn parse_numeric(s: &str) -> Option<f64> {
    if let Some(rest) = s.strip_prefix("-\\frac") {
        return parse_frac(rest).map(|v| -v);
    }
    if let Some(rest) = s.strip_prefix("\\frac") {
        return parse_frac(rest);
    }
    if let Some((a, b)) = s.split_once('/') {
        return ratio(parse_plain(a)?, parse_plain(b)?);
    }
    parse_plain(s)
}

fn parse_frac(rest: &str) -> Option<f64> {
    let inner = rest.strip_prefix('{')?;
    let a_len = matching_brace(inner)?;
    let after = inner[a_len + 1..].strip_prefix('{')?;
    let b_len = matching_brace(after)?;
    if b_len + 1 != after.len() {
        return None;
    }
    ratio(parse_plain(&inner[..a_len])?, parse_plain(&after[..b_len])?)
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

/// `-?\d+` or `-?\d*\.\d+`.
fn parse_plain(s: &str) -> Option<f64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (digits, ""),
    };
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let ok = !(int.is_empty() && frac.is_empty()) && all_digits(int) && all_digits(frac);
    if ok { s.parse().ok() } else { None }
}

/// Drops a trailing `\text{…}` (a unit, as in `5\text{ cm}`) when text precedes it.
fn drop_trailing_unit(s: &str) -> String {
    if let Some(pos) = s.rfind("\\text{") {
        let open = pos + "\\text{".len();
        if matching_brace(&s[open..]).is_some_and(|len| open + len + 1 == s.len()) {
            let head = s[..pos].trim_end();
            if !head.is_empty() {
                return head.to_string();
            }
        }
    }
    s.to_string()
}

/// Replaces every `command{X}` by `X` (brace-matched; an unclosed one is left as is).
fn unwrap_command(s: &str, command: &str) -> String {
    let open_pat = format!("{command}{{");
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(&open_pat) {
        let open = pos + open_pat.len();
        let Some(len) = matching_brace(&rest[open..]) else { break };
        out.push_str(&rest[..pos]);
        out.push_str(&rest[open..open + len]);
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    out
}

/// `\sqrt3` → `\sqrt{3}` (one character after `\sqrt` that is not a brace).
fn fix_sqrt(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut rest = s;
    while let Some(pos) = rest.find("\\sqrt") {
        out.push_str(&rest[..pos + 5]);
        rest = &rest[pos + 5..];
        if let Some(c) = rest.chars().next().filter(|&c| c != '{' && c != '\\') {
            out.push('{');
            out.push(c);
            out.push('}');
            rest = &rest[c.len_utf8()..];
        }
    }
    out.push_str(rest);
    out
}

/// `\frac12` → `\frac{1}{2}`, `\frac1{2}` → `\frac{1}{2}`, `\frac{1}2` → `\frac{1}{2}`.
fn fix_fracs(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut rest = s;
    while let Some(pos) = rest.find("\\frac") {
        out.push_str(&rest[..pos + 5]);
        rest = &rest[pos + 5..];
        for _ in 0..2 {
            match rest.chars().next() {
                Some('{') => {
                    let Some(len) = matching_brace(&rest[1..]) else { break };
                    out.push_str(&rest[..len + 2]);
                    rest = &rest[len + 2..];
                }
                Some(c) if c != '\\' => {
                    out.push('{');
                    out.push(c);
                    out.push('}');
                    rest = &rest[c.len_utf8()..];
                }
                _ => break,
            }
        }
    }
    out.push_str(rest);
    out
}

/// `1,234,567` → `1234567` (also with a sign and a decimal part); other commas stay (tuples).
fn strip_thousands_commas(s: &str) -> String {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let int = digits.split_once('.').map_or(digits, |(i, _)| i);
    let groups: Vec<&str> = int.split(',').collect();
    let grouped = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()))
        && parse_plain(&digits.replace(',', "")).is_some();
    if grouped { s.replace(',', "") } else { s.to_string() }
}

/// `2.50` → `2.5`, `72.0` → `72` for a plain decimal; anything else unchanged.
fn trim_decimal_zeros(s: &str) -> String {
    if s.contains('.') && parse_plain(s).is_some() {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        match t {
            "" | "-" => "0".to_string(),
            "-0" => "0".to_string(),
            _ => t.to_string(),
        }
    } else {
        s.to_string()
    }
}

/// `a/b` with integers `a`, `b` → `\frac{a}{b}`.
fn slash_to_frac(s: &str) -> String {
    if let Some((a, b)) = s.split_once('/') {
        let int = |x: &str| {
            let d = x.strip_prefix('-').unwrap_or(x);
            !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
        };
        if int(a) && int(b) && !b.starts_with('-') {
            return match a.strip_prefix('-') {
                Some(a) => format!("-\\frac{{{a}}}{{{b}}}"),
                None => format!("\\frac{{{a}}}{{{b}}}"),
            };
        }
    }
    s.to_string()
}
