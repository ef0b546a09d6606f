//! The keepalived.conf grammar: words, `{ }` blocks, comments, quotes and
//! `include`, turned into a tree of [`Node`]s that remember their file and line.
//!
//! * A statement is a keyword followed by values up to the end of the line, an
//!   opening `{` (then its block follows) or a closing `}`. A `{` alone on the
//!   next line opens the block of the statement before it.
//! * `#` and `!` start a comment that runs to the end of the line, anywhere
//!   outside double quotes (as in Keepalived).
//! * `"..."` is one value that may contain spaces, `{`, `}`, `#` and `!`.
//! * `include PATTERN` (first word of a line) splices in the files matching
//!   `PATTERN`, in name order; a relative pattern is relative to the directory of
//!   the including file. `*`, `?` and `[...]` match within one path component.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::KeepalivedError;

/// Deepest include nesting accepted (a loop of includes is caught by this).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a token or statement comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    /// The file (or `<input>` for text given directly).
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: usize,
}

/// One statement: `keyword value... [{ children }]`.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// The first word.
    pub keyword: String,
    /// The other words of the line.
    pub args: Vec<String>,
    /// The block, when the statement has one.
    pub block: Option<Vec<Node>>,
    /// Where the keyword is.
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
    /// End of a line (statements end here).
    Eol,
}

/// Reads `path` (and its includes) into a statement tree.
pub(crate) fn parse_file(path: &Path) -> Result<Vec<Node>, KeepalivedError> {
    let mut toks = Vec::new();
    lex_file(path, None, 0, &mut toks)?;
    Parser { toks, at: 0 }.parse_top()
}

/// Parses `text` (named `name` in errors); includes are relative to `dir`.
pub(crate) fn parse_text(text: &str, name: &Path, dir: &Path) -> Result<Vec<Node>, KeepalivedError> {
    let mut toks = Vec::new();
    lex_text(text, &Arc::new(name.to_path_buf()), dir, 0, &mut toks)?;
    Parser { toks, at: 0 }.parse_top()
}

fn lex_file(path: &Path, from: Option<(&Pos, &str)>, depth: usize, out: &mut Vec<(Tok, Pos)>) -> Result<(), KeepalivedError> {
    let text = std::fs::read_to_string(path).map_err(|e| match from {
        Some((pos, pattern)) => KeepalivedError::Include {
            file: pos.file.to_path_buf(),
            line: pos.line,
            keyword: "include".into(),
            message: format!("cannot read {} (from `{pattern}`): {e}", path.display()),
        },
        None => KeepalivedError::Include {
            file: path.to_path_buf(),
            line: 0,
            keyword: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        },
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    lex_text(&text, &Arc::new(path.to_path_buf()), &dir, depth, out)
}

fn lex_text(text: &str, file: &Arc<PathBuf>, dir: &Path, depth: usize, out: &mut Vec<(Tok, Pos)>) -> Result<(), KeepalivedError> {
    for (i, raw) in text.lines().enumerate() {
        let pos = Pos { file: Arc::clone(file), line: i + 1 };
        let toks = lex_line(raw, &pos)?;
        if let Some(Tok::Word(first)) = toks.first() {
            if first == "include" {
                let words: Vec<&str> = toks
                    .iter()
                    .skip(1)
                    .map(|t| match t {
                        Tok::Word(w) => Ok(w.as_str()),
                        _ => Err(syntax(&pos, "include", "`include` takes one file name or pattern and no block")),
                    })
                    .collect::<Result<_, _>>()?;
                let [pattern] = words.as_slice() else {
                    return Err(syntax(&pos, "include", "`include` takes exactly one file name or pattern"));
                };
                include(pattern, dir, &pos, depth, out)?;
                continue;
            }
        }
        out.extend(toks.into_iter().map(|t| (t, pos.clone())));
        out.push((Tok::Eol, pos));
    }
    Ok(())
}

fn include(pattern: &str, dir: &Path, pos: &Pos, depth: usize, out: &mut Vec<(Tok, Pos)>) -> Result<(), KeepalivedError> {
    let err =
        |message: String| KeepalivedError::Include { file: pos.file.to_path_buf(), line: pos.line, keyword: "include".into(), message };
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(err(format!("`{pattern}`: includes nested more than {MAX_INCLUDE_DEPTH} deep (does a file include itself?)")));
    }
    let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { dir.join(pattern) };
    let files = if has_wildcard(pattern) {
        let found = glob(&full).map_err(|e| err(format!("`{pattern}`: {e}")))?;
        if found.is_empty() {
            return Err(err(format!("`{pattern}` matches no file")));
        }
        found
    } else {
        vec![full]
    };
    for f in files {
        lex_file(&f, Some((pos, pattern)), depth + 1, out)?;
    }
    Ok(())
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Files matching `pattern`, sorted; wildcards work within path components.
fn glob(pattern: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut current = vec![PathBuf::new()];
    for comp in pattern.components() {
        let part = comp.as_os_str().to_string_lossy().into_owned();
        let mut next = Vec::new();
        for base in &current {
            if !has_wildcard(&part) {
                next.push(base.join(comp.as_os_str()));
                continue;
            }
            let dir = if base.as_os_str().is_empty() { Path::new(".") } else { base.as_path() };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = Vec::new();
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if (!name.starts_with('.') || part.starts_with('.')) && wildcard_match(&part, &name) {
                    names.push(name);
                }
            }
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        current = next;
    }
    current.retain(|p| p.is_file());
    Ok(current)
}

/// Shell-style match of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| match_from(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && match_from(&p[1..], &n[1..]),
        Some('[') => {
            let Some(close) = p.iter().skip(2).position(|&c| c == ']').map(|i| i + 2) else {
                return n.first() == Some(&'[') && match_from(&p[1..], &n[1..]);
            };
            let Some(&c) = n.first() else { return false };
            let (negate, set) = match p[1] {
                '!' | '^' => (true, &p[2..close]),
                _ => (false, &p[1..close]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && match_from(&p[close + 1..], &n[1..])
        }
        Some(&c) => n.first() == Some(&c) && match_from(&p[1..], &n[1..]),
    }
}

fn lex_line(line: &str, pos: &Pos) -> Result<Vec<Tok>, KeepalivedError> {
    let mut toks = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, toks: &mut Vec<Tok>| {
        if !word.is_empty() {
            toks.push(Tok::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' => break,
            '{' => {
                flush(&mut word, &mut toks);
                toks.push(Tok::Open);
            }
            '}' => {
                flush(&mut word, &mut toks);
                toks.push(Tok::Close);
            }
            '"' => {
                flush(&mut word, &mut toks);
                let mut quoted = String::new();
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '"' {
                        closed = true;
                        break;
                    }
                    quoted.push(q);
                }
                if !closed {
                    return Err(syntax(pos, "", "unterminated quoted string (a `\"` has no closing `\"`)"));
                }
                toks.push(Tok::Word(quoted));
            }
            c if c.is_whitespace() => flush(&mut word, &mut toks),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut toks);
    Ok(toks)
}

fn syntax(pos: &Pos, keyword: &str, message: &str) -> KeepalivedError {
    KeepalivedError::Syntax { file: pos.file.to_path_buf(), line: pos.line, keyword: keyword.to_string(), message: message.to_string() }
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    at: usize,
}

impl Parser {
    fn parse_top(mut self) -> Result<Vec<Node>, KeepalivedError> {
        let nodes = self.parse_block(None)?;
        Ok(nodes)
    }

    fn peek(&self) -> Option<&(Tok, Pos)> {
        self.toks.get(self.at)
    }

    /// Statements up to the `}` closing the block opened at `opened` (or the end).
    fn parse_block(&mut self, opened: Option<(&Pos, &str)>) -> Result<Vec<Node>, KeepalivedError> {
        let mut nodes: Vec<Node> = Vec::new();
        loop {
            let Some((tok, pos)) = self.toks.get(self.at).cloned() else {
                return match opened {
                    None => Ok(nodes),
                    Some((p, kw)) => Err(syntax(p, kw, &format!("the block of `{kw}` is never closed (missing `}}`)"))),
                };
            };
            self.at += 1;
            match tok {
                Tok::Eol => {}
                Tok::Close => {
                    return match opened {
                        Some(_) => Ok(nodes),
                        None => Err(syntax(&pos, "}", "`}` closes no block")),
                    };
                }
                Tok::Open => {
                    // `{` on a line of its own opens the block of the statement before.
                    match nodes.last_mut() {
                        Some(prev) if prev.block.is_none() => {
                            let kw = prev.keyword.clone();
                            let ppos = prev.pos.clone();
                            let children = self.parse_block(Some((&ppos, &kw)))?;
                            if let Some(prev) = nodes.last_mut() {
                                prev.block = Some(children);
                            }
                        }
                        _ => return Err(syntax(&pos, "{", "`{` without a keyword before it")),
                    }
                }
                Tok::Word(keyword) => {
                    let mut args = Vec::new();
                    let mut block = None;
                    while let Some((t, _)) = self.peek() {
                        match t {
                            Tok::Word(w) => {
                                args.push(w.clone());
                                self.at += 1;
                            }
                            Tok::Open => {
                                self.at += 1;
                                block = Some(self.parse_block(Some((&pos, &keyword)))?);
                                break;
                            }
                            Tok::Close | Tok::Eol => break,
                        }
                    }
                    nodes.push(Node { keyword, args, block, pos });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Node> {
        parse_text(text, Path::new("<t>"), Path::new(".")).expect("parses")
    }

    #[test]
    fn statements_blocks_and_comments() {
        let n = parse("a 1 2 # c\n! whole line\nb {\n  c \"x y # z\"\n  d { e }\n}\nf{g}h\n");
        assert_eq!(n.len(), 4);
        assert_eq!((n[0].keyword.as_str(), n[0].args.clone()), ("a", vec!["1".to_string(), "2".to_string()]));
        let b = n[1].block.as_ref().expect("block");
        assert_eq!(n[1].pos.line, 3);
        assert_eq!(b[0].args, vec!["x y # z".to_string()]);
        assert_eq!(b[1].block.as_ref().expect("d block")[0].keyword, "e");
        assert_eq!(b[1].pos.line, 5);
        assert_eq!(n[2].keyword, "f");
        assert_eq!(n[2].block.as_ref().expect("f block")[0].keyword, "g");
        assert_eq!(n[3].keyword, "h");
    }

    #[test]
    fn brace_on_next_line() {
        let n = parse("vrrp_instance VI_1\n{\n state MASTER\n}\n");
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].block.as_ref().expect("block")[0].args, vec!["MASTER".to_string()]);
    }

    #[test]
    fn unbalanced() {
        let e = parse_text("a {\n b\n", Path::new("<t>"), Path::new(".")).expect_err("unclosed");
        assert!(matches!(e, KeepalivedError::Syntax { line: 1, .. }), "{e}");
        let e = parse_text("a\n}\n", Path::new("<t>"), Path::new(".")).expect_err("extra");
        assert!(matches!(e, KeepalivedError::Syntax { line: 2, .. }), "{e}");
        let e = parse_text("a \"b\n", Path::new("<t>"), Path::new(".")).expect_err("quote");
        assert!(matches!(e, KeepalivedError::Syntax { line: 1, .. }), "{e}");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.conf", "a.conf"));
        assert!(!wildcard_match("*.conf", "a.conf.bak"));
        assert!(wildcard_match("vs-?.conf", "vs-1.conf"));
        assert!(wildcard_match("vs-[0-9].conf", "vs-7.conf"));
        assert!(!wildcard_match("vs-[!0-9].conf", "vs-7.conf"));
    }
}
