//! Stop strings. A stop string can arrive split over several tokens, so text that might be the
//! start of one is held back until it is clearly not.

/// Feeds generated text through, withholding what could still become a stop string.
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What to do after a piece of text.
#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Send this text (possibly empty) and go on.
    Continue(String),
    /// A stop string matched: send `text`, which ends just before it, and stop. `matched` is
    /// the stop string (Anthropic's `stop_sequence` names it).
    Stopped { text: String, matched: String },
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            stops,
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.held.push_str(text);
        // The earliest match wins; at one place, the longest.
        if let Some((at, stop)) = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()).map(|at| (at, stop)))
            .min_by_key(|(at, stop)| (*at, std::cmp::Reverse(stop.len())))
        {
            let text = self.held[..at].to_string();
            let matched = stop.clone();
            self.held.clear();
            return StopOutcome::Stopped { text, matched };
        }
        let keep = self.longest_partial_match();
        let split = self.held.len() - keep;
        let out = self.held[..split].to_string();
        self.held.drain(..split);
        StopOutcome::Continue(out)
    }

    /// The text still held back when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop string,
    /// on a character boundary.
    fn longest_partial_match(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in self.held.char_indices() {
                let suffix = &self.held[i..];
                if suffix.len() < stop.len() && stop.starts_with(suffix) {
                    best = best.max(suffix.len());
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let (out, matched) = run_matching(stops, pieces);
        (out, matched.is_some())
    }

    /// The text sent and the stop string that ended it.
    fn run_matching(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for piece in pieces {
            match m.push(piece) {
                StopOutcome::Continue(t) => out.push_str(&t),
                StopOutcome::Stopped { text, matched } => {
                    out.push_str(&text);
                    return (out, Some(matched));
                }
            }
        }
        out.push_str(&m.finish());
        (out, None)
    }

    #[test]
    fn the_earliest_stop_is_the_one_named() {
        assert_eq!(
            run_matching(&["two", "one t"], &["zero one two"]),
            ("zero ".into(), Some("one t".into()))
        );
        assert_eq!(
            run_matching(&["o", "on"], &["zero one"]),
            ("zer".into(), Some("o".into()))
        );
    }

    #[test]
    fn stop_split_over_pieces_is_caught_and_not_sent() {
        assert_eq!(
            run(&["END"], &["one E", "N", "D two"]),
            ("one ".into(), true)
        );
    }

    #[test]
    fn a_false_start_is_released() {
        assert_eq!(
            run(&["END"], &["one E", "N", "x"]),
            ("one ENx".into(), false)
        );
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["b", "a"], &["xxab"]), ("xx".into(), true));
    }

    #[test]
    fn no_stops_passes_everything() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn multibyte_text_is_held_on_char_boundaries() {
        assert_eq!(run(&["éé"], &["aé", "b"]), ("aéb".into(), false));
        assert_eq!(run(&["éé"], &["aé", "é"]), ("a".into(), true));
    }
}
