//! Which Prometheus alerts block a reboot: the alert-name filter and the firing-only rule.

use regex::Regex;

/// Longest alert-name filter accepted (a regular expression).
pub const MAX_ALERT_FILTER_BYTES: usize = 1024;

/// An alert as Prometheus lists it: its `alertname` label and its state
/// (`firing` or `pending`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    pub state: String,
}

/// kured's rule: with no filter every alert blocks; a filter names alerts
/// to ignore, or, with `match_only`, the only alerts that block; with
/// `firing_only`, pending alerts never block.
#[derive(Debug, Clone)]
pub struct AlertFilter {
    filter: Option<Regex>,
    match_only: bool,
    firing_only: bool,
}

impl AlertFilter {
    /// `Err` names what is wrong with `pattern` (regex syntax, length).
    pub fn new(
        pattern: Option<&str>,
        match_only: bool,
        firing_only: bool,
    ) -> Result<AlertFilter, String> {
        let filter = match pattern {
            Some(p) if p.len() > MAX_ALERT_FILTER_BYTES => {
                return Err(format!("longer than {MAX_ALERT_FILTER_BYTES} bytes"))
            }
            Some(p) => Some(Regex::new(p).map_err(|e| format!("not a regular expression: {e}"))?),
            None => None,
        };
        Ok(AlertFilter {
            filter,
            match_only,
            firing_only,
        })
    }

    /// Whether `alert` blocks.
    pub fn blocks(&self, alert: &Alert) -> bool {
        if self.firing_only && alert.state != "firing" {
            return false;
        }
        match &self.filter {
            None => true,
            Some(re) => re.is_match(&alert.name) == self.match_only,
        }
    }

    /// The names of the alerts that block, sorted, each once.
    pub fn blocking(&self, alerts: &[Alert]) -> Vec<String> {
        let mut names: Vec<String> = alerts
            .iter()
            .filter(|a| self.blocks(a))
            .map(|a| a.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, state: &str) -> Alert {
        Alert {
            name: name.into(),
            state: state.into(),
        }
    }

    fn alerts() -> Vec<Alert> {
        vec![
            alert("Watchdog", "firing"),
            alert("NodeDown", "firing"),
            alert("DiskFilling", "pending"),
            alert("NodeDown", "firing"),
        ]
    }

    #[test]
    fn without_a_filter_every_alert_blocks() {
        let f = AlertFilter::new(None, false, false).unwrap();
        assert_eq!(
            f.blocking(&alerts()),
            ["DiskFilling", "NodeDown", "Watchdog"]
        );
        let f = AlertFilter::new(None, false, true).unwrap();
        assert_eq!(f.blocking(&alerts()), ["NodeDown", "Watchdog"]);
    }

    #[test]
    fn a_filter_ignores_what_it_matches_or_with_match_only_keeps_only_that() {
        let f = AlertFilter::new(Some("^(Watchdog|InfoInhibitor)$"), false, false).unwrap();
        assert_eq!(f.blocking(&alerts()), ["DiskFilling", "NodeDown"]);
        let f = AlertFilter::new(Some("^Node"), true, false).unwrap();
        assert_eq!(f.blocking(&alerts()), ["NodeDown"]);
        let f = AlertFilter::new(Some("^Disk"), true, true).unwrap();
        assert!(f.blocking(&alerts()).is_empty(), "pending only");
    }

    #[test]
    fn a_bad_pattern_is_refused() {
        assert!(AlertFilter::new(Some("(unclosed"), false, false)
            .unwrap_err()
            .contains("regular expression"));
        let long = "a".repeat(MAX_ALERT_FILTER_BYTES + 1);
        assert!(AlertFilter::new(Some(&long), false, false)
            .unwrap_err()
            .contains("longer"));
    }
}
