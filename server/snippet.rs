//! What search shows of a message: the words of a query, and a snippet of a text around the
//! first match with the matches marked. Words are runs of letters and digits, as both databases'
//! full-text indexes split them; a text word matches when it starts with a query word.

use std::ops::Range;

/// Characters of text a snippet shows at most (plus an ellipsis at either cut end).
const SNIPPET_CHARS: usize = 160;
/// Characters of context a snippet keeps before its first match.
const CONTEXT_BEFORE: usize = 40;

/// The words of `text` in lower case.
pub fn words_of(text: &str) -> Vec<String> {
    word_spans(&text.chars().collect::<Vec<_>>())
        .map(|(_, word)| word)
        .collect()
}

/// A snippet of `text` and, in it, the character ranges of the words that start with one of
/// `words` (lower case, as [`words_of`] makes them).
pub fn snippet(text: &str, words: &[String]) -> (String, Vec<Range<usize>>) {
    let chars: Vec<char> = text.chars().collect();
    let matches: Vec<Range<usize>> = word_spans(&chars)
        .filter(|(_, word)| words.iter().any(|w| word.starts_with(w.as_str())))
        .map(|(span, _)| span)
        .collect();
    let first = matches.first().map_or(0, |m| m.start);
    let mut start = first.saturating_sub(CONTEXT_BEFORE);
    // Start at a word's beginning rather than in its middle.
    while start > 0 && start < first && chars[start - 1].is_alphanumeric() {
        start += 1;
    }
    let end = (start + SNIPPET_CHARS).min(chars.len());
    let lead = if start > 0 { "…" } else { "" };
    let tail = if end < chars.len() { "…" } else { "" };
    let shift = lead.chars().count();
    let snippet = format!(
        "{lead}{}{tail}",
        chars[start..end].iter().collect::<String>()
    );
    let highlights = matches
        .into_iter()
        .filter(|m| m.start >= start && m.start < end)
        .map(|m| m.start - start + shift..m.end.min(end) - start + shift)
        .collect();
    (snippet, highlights)
}

/// Each word of `chars` with its character range, in lower case.
fn word_spans(chars: &[char]) -> impl Iterator<Item = (Range<usize>, String)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < chars.len() && !chars[i].is_alphanumeric() {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i].is_alphanumeric() {
            i += 1;
        }
        (start < i).then(|| {
            let word: String = chars[start..i].iter().collect();
            (start..i, word.to_lowercase())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(text: &str, query: &str) -> String {
        let (snippet, ranges) = snippet(text, &words_of(query));
        let chars: Vec<char> = snippet.chars().collect();
        let mut out = String::new();
        let mut at = 0;
        for range in ranges {
            out.extend(&chars[at..range.start]);
            out.push('[');
            out.extend(&chars[range.clone()]);
            out.push(']');
            at = range.end;
        }
        out.extend(&chars[at..]);
        out
    }

    #[test]
    fn query_words_are_letters_and_digits_in_lower_case() {
        assert_eq!(words_of("  Hello, wörld! x2 -- "), ["hello", "wörld", "x2"]);
        assert!(words_of("\"*:&|!").is_empty());
    }

    #[test]
    fn matches_are_marked_at_word_starts_only() {
        assert_eq!(
            marked("Lunch at Noon? noonish works", "noon lun"),
            "[Lunch] at [Noon]? [noonish] works"
        );
        assert_eq!(marked("afternoon", "noon"), "afternoon");
    }

    #[test]
    fn a_long_text_is_cut_around_the_first_match() {
        let text = format!("{} needle {}", "hay ".repeat(100), "straw ".repeat(100));
        let marked = marked(&text, "needle");
        assert!(marked.starts_with("…hay"), "{marked}");
        assert!(marked.ends_with('…'));
        assert!(marked.contains("[needle]"));
        assert!(marked.chars().count() <= SNIPPET_CHARS + 4);
    }

    #[test]
    fn ranges_count_characters_not_bytes() {
        let (snippet, ranges) = snippet("ça va, élan", &words_of("élan"));
        let chars: Vec<char> = snippet.chars().collect();
        assert_eq!(chars[ranges[0].clone()].iter().collect::<String>(), "élan");
    }
}
