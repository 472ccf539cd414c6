//! Where and how riskwatch logs: to standard error, filtered by `RISKWATCH_LOG`, as text
//! (coloured only on a terminal and without `NO_COLOR`) or as one JSON object per line
//! (`--log-format json` or `RISKWATCH_LOG_FORMAT=json`).

use anyhow::{bail, Result};
use std::io::IsTerminal;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields.
    Json,
}

/// The format: the flag if given, else `RISKWATCH_LOG_FORMAT` (`text` or `json`), else text.
pub fn format(flag: Option<LogFormat>, env: Option<&str>) -> Result<LogFormat> {
    Ok(match (flag, env.map(str::trim)) {
        (Some(f), _) => f,
        (None, None | Some("")) => LogFormat::Text,
        (None, Some(v)) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
        (None, Some(v)) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
        (None, Some(v)) => bail!("RISKWATCH_LOG_FORMAT: {v:?} is not a log format (text or json)"),
    })
}

/// Whether output to a stream is coloured: only on a terminal, and not when `NO_COLOR` is set
/// to anything non-empty (<https://no-color.org>).
pub fn colour(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// [`colour`] with this process's `NO_COLOR`.
pub fn colour_for(is_terminal: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR");
    colour(is_terminal, no_color.as_ref().map(|v| v.to_str().unwrap_or("set")))
}

/// Installs the process's logger.
pub fn init(flag: Option<LogFormat>) -> Result<()> {
    let format = format(flag, std::env::var("RISKWATCH_LOG_FORMAT").ok().as_deref())?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RISKWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            builder.with_ansi(colour_for(std::io::stderr().is_terminal())).init();
        }
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("")), "an empty NO_COLOR does not count");
        assert!(!colour(true, Some("1")));
        assert!(!colour(true, Some("false")), "any non-empty value turns colour off");
        assert!(!colour(false, None), "a file, a pipe, docker logs");
        assert!(!colour(false, Some("1")));
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_a_bad_value_is_named() {
        assert_eq!(format(None, None).unwrap(), LogFormat::Text);
        assert_eq!(format(None, Some("JSON")).unwrap(), LogFormat::Json);
        assert_eq!(format(None, Some("text")).unwrap(), LogFormat::Text);
        assert_eq!(format(Some(LogFormat::Text), Some("json")).unwrap(), LogFormat::Text);
        assert_eq!(format(Some(LogFormat::Json), None).unwrap(), LogFormat::Json);
        let e = format(None, Some("xml")).unwrap_err().to_string();
        assert!(e.contains("RISKWATCH_LOG_FORMAT") && e.contains("xml"), "{e}");
    }
}
