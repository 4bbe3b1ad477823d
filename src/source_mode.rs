//! `SOURCE`: where a history type's records may come from (the archive, REST, or both).

use std::fmt;
use std::str::FromStr;

/// `SOURCE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceMode {
    #[default]
    Auto,
    Rest,
    Archive,
}

impl FromStr for SourceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(SourceMode::Auto),
            "rest" | "api" => Ok(SourceMode::Rest),
            "archive" | "archives" | "vision" => Ok(SourceMode::Archive),
            other => Err(format!(
                "SOURCE {other:?} is not valid: expected auto (archive where it has the data, REST for the rest), rest or archive"
            )),
        }
    }
}

impl fmt::Display for SourceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceMode::Auto => "auto",
            SourceMode::Rest => "rest",
            SourceMode::Archive => "archive",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names() {
        assert_eq!("AUTO".parse::<SourceMode>().unwrap(), SourceMode::Auto);
        assert_eq!(" rest".parse::<SourceMode>().unwrap(), SourceMode::Rest);
        assert_eq!(
            "archive".parse::<SourceMode>().unwrap(),
            SourceMode::Archive
        );
        assert!("ftp".parse::<SourceMode>().unwrap_err().contains("SOURCE"));
    }
}
